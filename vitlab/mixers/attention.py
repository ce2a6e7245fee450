"""Multi-head self-attention (Vaswani et al. 2017), optionally with 2D axial RoPE on the patch
tokens (DINOv3), QK-norm (Dehghani et al. 2023) and DINOv3's ``mask_k_bias``.

Implementations (``attn_impl``): ``flash`` (flash-attn, CUDA, fp16/bf16), ``sdpa``
(``F.scaled_dot_product_attention``), ``math`` (explicit softmax, for debugging and exact FLOP accounting);
``auto`` takes flash-attn when importable and the input is half precision on CUDA, else SDPA. Which
implementation computes the attention is apart from ``kernels``, the fused kernels around it (RoPE).

Axis legend: B batch, T tokens (patches first, then CLS/registers), H heads, d head_dim, D = H*d.
"""

from __future__ import annotations

import importlib.util
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from vitlab.compat import RenamedAttribute, renamed_kwargs
from vitlab.config import ModuleFactory, build
from vitlab.kernels import resolve_kernels, rope_2d
from vitlab.kernels.dispatch import Backend
from vitlab.layers.token_layout import TokenLayout

__all__ = ["Attention", "AttentionMixer", "flash_attn_available", "qk_parts", "rotate_patches"]

_ATTN_IMPLS = ("auto", "flash", "sdpa", "math")


def flash_attn_available() -> bool:
    return importlib.util.find_spec("flash_attn") is not None


def qk_parts(qk_norm_layer: ModuleFactory | None, rope_layer: ModuleFactory | None, dim: int, num_heads: int, *,
             kernels: Backend, device=None, dtype=None) -> tuple[nn.Module, nn.Module, nn.Module | None]:
    """The query / key norms (``nn.Identity`` without ``qk_norm_layer``; built with ``kernels``) and the RoPE
    module of an attention mixer with ``num_heads`` heads of width ``dim / num_heads``; RoPE needs that head
    width divisible by 4."""
    head_dim = dim // num_heads
    q_norm = build(qk_norm_layer, dim=head_dim, kernels=kernels, device=device, dtype=dtype) or nn.Identity()
    k_norm = build(qk_norm_layer, dim=head_dim, kernels=kernels, device=device, dtype=dtype) or nn.Identity()
    if rope_layer is not None and head_dim % 4:
        raise ValueError(f"RoPE needs head_dim divisible by 4, got dim={dim}/num_heads={num_heads}={head_dim}")
    return q_norm, k_norm, build(rope_layer, head_dim=head_dim, device=device, dtype=dtype)


def rotate_patches(rope: nn.Module, q: torch.Tensor, k: torch.Tensor, layout: TokenLayout,
                   kernels: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """Queries and keys [B, H, T, d] with 2D RoPE applied to the patch tokens (the first ``h*w``); CLS,
    registers and padding stay as they are. The table is drawn once per layout (shared by the blocks with
    the same RoPE settings), and the rotation runs in float32, as DINOv3 does under bf16 autocast."""
    sin, cos = layout.cached(rope.cache_key, lambda: rope(layout.grid_h, layout.grid_w))
    q32, k32 = rope_2d(q.float(), k.float(), cos, sin, num_prefix_tokens=0, backend=kernels)
    return q32.to(q.dtype), k32.to(k.dtype)


class AttentionMixer(nn.Module):
    """Base of the attention mixers (:class:`Attention`, :class:`~vitlab.mixers.NeighborhoodAttention`): the fused
    ``qkv`` and the output ``proj`` projections, the per-head q/k norms and RoPE (:func:`qk_parts`), and the
    queries, keys and values of the tokens (:meth:`_qkv`). Which keys a query attends to is the subclass's.

    Args:
        dim: model width D.
        num_heads: H; ``dim`` must divide evenly.
        qkv_bias, proj_bias: biases of the input and output projections.
        mask_k_bias: keep the key part of the qkv bias at zero (DINOv3); it cannot change softmax.
        qk_norm_layer: factory (or config) of a norm applied per head to q and k (gets ``dim=head_dim``).
        rope_layer: factory (or config) of :class:`~vitlab.layers.RotaryEmbedding2D` (gets ``head_dim``).
        kernels: ``auto | triton | torch`` for the fused kernels (None: :func:`vitlab.kernels.resolve_kernels`).
    """

    CONFIG_ARGS: ClassVar[tuple[str, ...]] = ("qk_norm_layer", "rope_layer")

    def __init__(self, dim: int, *, num_heads: int, qkv_bias: bool, proj_bias: bool, mask_k_bias: bool = False,
                 qk_norm_layer: ModuleFactory | None, rope_layer: ModuleFactory | None, kernels: Backend | None,
                 device=None, dtype=None):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim={dim} is not divisible by num_heads={num_heads}")
        self.dim, self.num_heads, self.head_dim = dim, num_heads, dim // num_heads
        dd = dict(device=device, dtype=dtype)
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias, **dd)
        self.proj = nn.Linear(dim, dim, bias=proj_bias, **dd)
        if mask_k_bias and qkv_bias:
            mask = torch.ones(3 * dim, device=device, dtype=dtype)
            mask[dim : 2 * dim] = 0
            self.register_buffer("bias_mask", mask, persistent=False)
        else:
            self.bias_mask = None
        self.kernels = resolve_kernels(kernels)
        self.q_norm, self.k_norm, self.rope = qk_parts(qk_norm_layer, rope_layer, dim, num_heads,
                                                       kernels=self.kernels, **dd)

    def _qkv(self, x: torch.Tensor, layout: TokenLayout) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries, keys, values [B, H, T, d] each; q and k normed and (patches) rotated."""
        B, T, _ = x.shape
        bias = self.qkv.bias if self.bias_mask is None else self.qkv.bias * self.bias_mask
        qkv = F.linear(x, self.qkv.weight, bias).reshape(B, T, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [B, H, T, d]
        q, k = self.q_norm(q), self.k_norm(k)
        if self.rope is not None:
            q, k = rotate_patches(self.rope, q, k, layout, self.kernels)
        return q, k, v

    def _projection_flops(self, tokens: int) -> int:
        """Forward FLOPs of the qkv and output projections over ``tokens`` tokens (2 per multiply-add)."""
        D = self.dim
        return 2 * tokens * D * 3 * D + 2 * tokens * D * D


class Attention(AttentionMixer):
    """Token mixer ``[B, T, D] -> [B, T, D]``.

    Args:
        dim: model width D (injected by the block).
        num_heads: H; ``dim`` must divide evenly.
        qkv_bias, proj_bias: biases of the input and output projections.
        mask_k_bias: keep the key part of the qkv bias at zero (DINOv3); it cannot change softmax.
        qk_norm_layer: factory (or config) of a norm applied per head to q and k (gets ``dim=head_dim``).
        rope_layer: factory (or config) of :class:`~vitlab.layers.RotaryEmbedding2D` (gets ``head_dim``);
            rotates patch tokens only.
        attn_impl: ``auto | flash | sdpa | math``, what computes ``softmax(q k^T) v`` (the module docstring).
        kernels: ``auto | triton | torch`` for its fused kernels (injected by the block; None:
            :func:`vitlab.kernels.resolve_kernels`).
    """

    backend = RenamedAttribute("attn_impl")

    @renamed_kwargs(qk_norm="qk_norm_layer", rope="rope_layer", backend="attn_impl")
    def __init__(
        self,
        dim: int,
        *,
        num_heads: int,
        qkv_bias: bool = True,
        proj_bias: bool = True,
        mask_k_bias: bool = False,
        qk_norm_layer: ModuleFactory | None = None,
        rope_layer: ModuleFactory | None = None,
        attn_impl: Literal["auto", "flash", "sdpa", "math"] = "auto",
        kernels: Backend | None = None,
        device=None,
        dtype=None,
    ):
        super().__init__(dim, num_heads=num_heads, qkv_bias=qkv_bias, proj_bias=proj_bias, mask_k_bias=mask_k_bias,
                         qk_norm_layer=qk_norm_layer, rope_layer=rope_layer, kernels=kernels, device=device, dtype=dtype)
        if attn_impl not in _ATTN_IMPLS:
            raise ValueError(f"Attention attn_impl must be one of {_ATTN_IMPLS}, got attn_impl={attn_impl!r}")
        if attn_impl == "flash" and not flash_attn_available():
            raise ValueError("attn_impl='flash' needs the flash-attn package (pip install 'vitlab[gpu]')")
        self.attn_impl = attn_impl

    @property
    def pattern_letter(self) -> str:
        """``R`` with RoPE, ``A`` without: the block letters of docs/models.md (a homogeneous network's pattern)."""
        return "A" if self.rope is None else "R"

    def forward(self, x: torch.Tensor, layout: TokenLayout) -> torch.Tensor:
        B, T, D = x.shape
        q, k, v = self._qkv(x, layout)
        x = self._attend(q, k, v)  # [B, H, T, d]
        return self.proj(x.transpose(1, 2).reshape(B, T, D))

    def attention_weights(self, x: torch.Tensor, layout: TokenLayout) -> torch.Tensor:
        """The attention probabilities of the forward on ``x``, whatever the ``attn_impl``.

        Args:
            x: the mixer's input [B, T, D] (the block's normed tokens).
            layout: the tokens' layout (RoPE rotates the patches).

        Returns:
            ``softmax(q k^T / sqrt(d))`` [B, H, T, T], query by key: the ``math`` implementation's weights.
        """
        q, k, _ = self._qkv(x, layout)
        return self._weights(q, k)

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        impl = self.attn_impl
        if impl == "auto":
            half = q.dtype in (torch.float16, torch.bfloat16)
            impl = "flash" if q.is_cuda and half and flash_attn_available() else "sdpa"
        if impl == "flash":
            from flash_attn import flash_attn_func

            out = flash_attn_func(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
            return out.transpose(1, 2)
        if impl == "sdpa":
            return F.scaled_dot_product_attention(q, k, v)
        return self._weights(q, k) @ v

    def _weights(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return ((q * self.head_dim**-0.5) @ k.transpose(-2, -1)).softmax(dim=-1)  # [B, H, T, T]

    def flop_count(self, tokens: int, layout: TokenLayout | None = None, batch_size: int = 1) -> int:
        """Forward FLOPs: qkv and output projections, ``q k^T`` and ``attn v`` (2 per multiply-add)."""
        return batch_size * (self._projection_flops(tokens) + 2 * 2 * tokens * tokens * self.dim)

    def backward_flop_count(self, tokens: int, layout: TokenLayout | None = None, batch_size: int = 1) -> int:
        """Backward FLOPs: 2x for the projections; 2.5x for fused attention, which recomputes the scores."""
        proj = self._projection_flops(tokens)
        scores = 2 * 2 * tokens * tokens * self.dim
        return batch_size * (2 * proj + (5 * scores) // 2 if self.attn_impl != "math" else 2 * proj + 2 * scores)

