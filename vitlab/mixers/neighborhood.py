"""2D neighborhood attention (Hassani et al. 2023, "Neighborhood Attention Transformer"; dilated form:
Hassani and Shi 2022, "Dilated Neighborhood Attention Transformer"; NATTEN's semantics).

Each patch attends to a ``window x window`` neighbourhood of the patch grid. As in NAT, the neighbourhood
is clamped at the border rather than cut: a patch near an edge keeps ``window`` keys along each axis by
sliding its window inwards, so every patch attends to exactly ``window**2`` patches. With ``dilation``
``d`` the neighbours are every ``d``-th patch: the grid splits per axis into ``d`` interleaved groups of
equal residue (``i % d``) and the clamped window runs within a patch's group, as NATTEN does. Where an axis
(or a dilation group along it) is shorter than the window, the window covers all of it (NATTEN raises
instead; vitlab keeps small crops, e.g. DINO's local crops, working).

CLS and registers are global tokens, as in Longformer's global attention (Beltagy et al. 2020): they
attend to every token, and every patch attends to them besides its neighbourhood. They have no place on
the grid, so a local rule would leave them nothing to attend to; this way a neighbourhood block lets them
gather the whole image and pass it back, and with a window covering the grid the block is exactly global
attention. Padding tokens (a layout that pads this block, ``padding_types``) are no tokens: nothing
attends to them, and each attends only to itself, so its row of scores is never empty.

Implementations (``attn_impl``): ``flex`` (``torch.nn.attention.flex_attention`` with a block mask: block-sparse, forward and
backward on CUDA; torch 2.14 runs it on CPU for inference only, and eager flex_attention materialises the
scores, so an eager caller gets it compiled), ``sdpa`` (``F.scaled_dot_product_attention`` with the dense
boolean mask: the fallback and the parity reference), ``auto`` (flex on CUDA, SDPA on CPU).

FLOPs count the attended (query, key) pairs, as NATTEN and the NAT paper count them: ``window**2 + G`` keys
per patch (G global tokens), all real tokens per global query, one key per padding token. The SDPA fallback
computes the masked-out scores too; :mod:`vitlab.flops` counts masked pairs as 0 in its cross-check.

Axis legend: B batch, T tokens (patches first, then CLS/registers, then padding), H heads, d head_dim,
D = H*d, N = h*w patches, G = cls + registers.
"""

from __future__ import annotations

import functools
import warnings
from typing import Callable, Literal

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import any_torch_dispatch_mode_on_stack

from vitlab.compat import RenamedAttribute, renamed_kwargs
from vitlab.config import ModuleFactory
from vitlab.kernels.dispatch import Backend
from vitlab.layers.token_layout import TokenLayout
from vitlab.mixers.attention import AttentionMixer

__all__ = ["NeighborhoodAttention", "axis_windows", "neighborhood_mask_fn", "window_keys"]

_ATTN_IMPLS = ("auto", "flex", "sdpa")


def axis_windows(length: int, window: int, dilation: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """First and last key coordinate (inclusive) of each position's window along one axis: two [length] tensors.

    Position ``i`` is in group ``i % dilation`` (``(length - g + dilation - 1) // dilation`` members); its
    window is the ``min(window, group length)`` consecutive group members centred on it, clamped to the group.
    """
    i = torch.arange(length, device=device)
    group, rank = i % dilation, i // dilation
    group_len = (length - group + dilation - 1) // dilation
    span = group_len.clamp(max=window)
    start = torch.minimum((rank - window // 2).clamp(min=0), group_len - span)
    lo = group + start * dilation
    return lo, lo + (span - 1) * dilation


def window_keys(length: int, window: int, dilation: int) -> int:
    """Keys summed over the positions of one axis: ``sum_i min(window, len(group of i))``."""
    groups = [(length - g + dilation - 1) // dilation for g in range(min(dilation, length))]
    return sum(n * min(window, n) for n in groups)


def neighborhood_mask_fn(layout: TokenLayout, window: int, dilation: int,
                         device=None) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``allowed(q, kv)``: whether query token ``q`` attends to key token ``kv`` (broadcasting int tensors).

    One rule for both implementations: SDPA's dense mask evaluates it on ``[T, 1]`` x ``[1, T]`` indices,
    flex's block mask calls it per index pair.
    """
    h, w, N, real = layout.grid_h, layout.grid_w, layout.num_patches, layout.num_tokens
    row_lo, row_hi = axis_windows(h, window, dilation, device)
    col_lo, col_hi = axis_windows(w, window, dilation, device)

    def allowed(q: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
        # clamped, so that non-patch indices read the tables in bounds (their result is masked below)
        qi, ki = q.clamp(max=N - 1), kv.clamp(max=N - 1)
        qr, qc, kr, kc = qi // w, qi % w, ki // w, ki % w
        near = (kr >= row_lo[qr]) & (kr <= row_hi[qr]) & (kc >= col_lo[qc]) & (kc <= col_hi[qc])
        if dilation > 1:
            near = near & ((kr - qr) % dilation == 0) & ((kc - qc) % dilation == 0)
        patch_q, patch_k = q < N, kv < N
        real_k = kv < real
        global_k = ~patch_k & real_k
        return ((patch_q & ((patch_k & near) | global_k))
                | (~patch_q & (q < real) & real_k)  # global queries see every real token
                | ((q >= real) & (kv == q)))  # padding: itself only

    return allowed


@functools.cache
def _compiled_flex_attention():
    """flex_attention compiled once per process (eager callers): without compile it materialises the scores."""
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=False)


class NeighborhoodAttention(AttentionMixer):
    """Token mixer ``[B, T, D] -> [B, T, D]``: patches attend to a clamped ``window x window`` neighbourhood
    (and the global tokens), global tokens attend to all.

    Args:
        dim: model width D (injected by the block).
        num_heads: H; ``dim`` must divide evenly.
        window: side of the neighbourhood (odd, >= 1; NAT uses 7).
        dilation: step between neighbours (>= 1).
        qkv_bias, proj_bias: biases of the input and output projections.
        qk_norm_layer: factory (or config) of a norm applied per head to q and k (gets ``dim=head_dim``).
        rope_layer: factory (or config) of :class:`~vitlab.layers.RotaryEmbedding2D` (gets ``head_dim``);
            rotates patch tokens only, as :class:`~vitlab.mixers.Attention` does.
        attn_impl: ``auto | flex | sdpa`` (see the module docstring).
        kernels: ``auto | triton | torch`` for its fused kernels (injected by the block; None:
            :func:`vitlab.kernels.resolve_kernels`).
    """

    pattern_letter = "N"  # its block letter in docs/models.md
    backend = RenamedAttribute("attn_impl")

    @renamed_kwargs(qk_norm="qk_norm_layer", rope="rope_layer", backend="attn_impl")
    def __init__(
        self,
        dim: int,
        *,
        num_heads: int,
        window: int = 7,
        dilation: int = 1,
        qkv_bias: bool = True,
        proj_bias: bool = True,
        qk_norm_layer: ModuleFactory | None = None,
        rope_layer: ModuleFactory | None = None,
        attn_impl: Literal["auto", "flex", "sdpa"] = "auto",
        kernels: Backend | None = None,
        device=None,
        dtype=None,
    ):
        # the names of Attention's parts, so that an Attention's weights load as they are
        super().__init__(dim, num_heads=num_heads, qkv_bias=qkv_bias, proj_bias=proj_bias, qk_norm_layer=qk_norm_layer,
                         rope_layer=rope_layer, kernels=kernels, device=device, dtype=dtype)
        if not isinstance(window, int) or window < 1 or window % 2 == 0:
            raise ValueError(f"NeighborhoodAttention window must be an odd positive integer (centred), got window={window!r}")
        if not isinstance(dilation, int) or dilation < 1:
            raise ValueError(f"NeighborhoodAttention dilation must be a positive integer, got dilation={dilation!r}")
        if attn_impl not in _ATTN_IMPLS:
            raise ValueError(f"NeighborhoodAttention attn_impl must be one of {_ATTN_IMPLS}, got attn_impl={attn_impl!r}")
        self.window, self.dilation, self.attn_impl = window, dilation, attn_impl

    def forward(self, x: torch.Tensor, layout: TokenLayout) -> torch.Tensor:
        B, T, D = x.shape
        q, k, v = self._qkv(x, layout)
        if self._impl(q) == "flex":
            out = self._flex(q, k, v, layout)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=self.mask(layout, T, x.device))
        return self.proj(out.transpose(1, 2).reshape(B, T, D))  # out: [B, H, T, d]

    def attention_weights(self, x: torch.Tensor, layout: TokenLayout) -> torch.Tensor:
        """The forward's attention probabilities [B, H, T, T] (query by key; 0 outside the neighbourhoods)."""
        q, k, _ = self._qkv(x, layout)
        scores = (q * self.head_dim**-0.5) @ k.transpose(-2, -1)
        return scores.masked_fill(~self.mask(layout, x.shape[1], x.device), float("-inf")).softmax(dim=-1)

    def mask(self, layout: TokenLayout, tokens: int, device=None) -> torch.Tensor:
        """The dense boolean mask [T, T] (True: attend), once per forward for blocks of the same window."""
        def compute():
            allowed = neighborhood_mask_fn(layout, self.window, self.dilation, device)
            i = torch.arange(tokens, device=device)
            return allowed(i[:, None], i[None, :])

        return layout.cached(("neighborhood_mask", self.window, self.dilation, tokens, str(device)), compute)

    def block_mask(self, layout: TokenLayout, tokens: int, device=None):
        """flex_attention's :class:`BlockMask` of :meth:`mask`, once per forward."""
        from torch.nn.attention.flex_attention import create_block_mask

        def compute():
            allowed = neighborhood_mask_fn(layout, self.window, self.dilation, device)
            return create_block_mask(lambda b, h, q, kv: allowed(q, kv), None, None, tokens, tokens, device=device)

        return layout.cached(("neighborhood_block_mask", self.window, self.dilation, tokens, str(device)), compute)

    def _impl(self, q: torch.Tensor) -> str:
        impl = self.attn_impl if self.attn_impl != "auto" else ("flex" if q.is_cuda else "sdpa")
        if impl == "flex" and q.device.type == "cpu" and q.requires_grad:
            raise ValueError("NeighborhoodAttention attn_impl='flex' cannot train on CPU: torch's flex_attention has "
                             "no CPU backward; use attn_impl='auto' (SDPA with a mask on CPU) or 'sdpa'")
        return impl

    def _flex(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: TokenLayout) -> torch.Tensor:
        from torch.nn.attention.flex_attention import flex_attention

        tokens = q.shape[2]
        if not torch.compiler.is_compiling() and any_torch_dispatch_mode_on_stack():
            # FlopCounterMode, FakeTensorMode: dynamo compiles nothing under a dispatch mode, and eager
            # flex_attention asks for a fullgraph compile of its op; run that op eagerly instead.
            block_mask = self.block_mask(layout, tokens, q.device)
            with torch.compiler.set_stance("force_eager"), warnings.catch_warnings():
                warnings.filterwarnings("ignore", "flex_attention called without torch.compile")  # on purpose here
                return flex_attention(q, k, v, block_mask=block_mask)
        # Inductor's CPU flex kernel (torch 2.14, AVX2) returns wrong rows or NaN for fewer than 128 tokens
        # that are 8 past a multiple of 16 (8, 24, ..., 120) at head_dim 8 or 16; every multiple of 16 is
        # right. So on CPU the compiled kernel sees the tokens padded to a multiple of 16: the mask rule
        # makes the extra tokens padding (each attends only to itself, none attends to them).
        padded = -(-tokens // 16) * 16 if q.device.type == "cpu" else tokens
        block_mask = self.block_mask(layout, padded, q.device)
        # Contiguous operands: inductor's CPU flex kernel (torch 2.14) read the rotated q and k of a compiled
        # block wrongly (max error 0.7) when handed them strided, as flex kernels have before (pytorch#146377).
        q, k, v = (F.pad(t, (0, 0, 0, padded - tokens)).contiguous() for t in (q, k, v))
        if torch.compiler.is_compiling():  # a compiled block: dynamo compiles flex_attention with it
            out = flex_attention(q, k, v, block_mask=block_mask)
        else:  # eager callers get the compiled kernel (eager flex_attention materialises the [T, T] scores)
            out = _compiled_flex_attention()(q, k, v, block_mask=block_mask)
        return out[:, :, :tokens]

    def attended_pairs(self, tokens: int, layout: TokenLayout) -> int:
        """(query, key) pairs one head of one image attends to: the mask's True entries."""
        N, real = layout.num_patches, layout.num_tokens
        G, P = real - N, tokens - real
        patch_pairs = (window_keys(layout.grid_h, self.window, self.dilation)
                       * window_keys(layout.grid_w, self.window, self.dilation))
        return patch_pairs + N * G + G * real + P

    def flop_count(self, tokens: int, layout: TokenLayout, batch_size: int = 1) -> int:
        """Forward FLOPs: qkv and output projections, ``q k^T`` and ``attn v`` over the attended pairs."""
        return batch_size * (self._projection_flops(tokens) + 2 * 2 * self.attended_pairs(tokens, layout) * self.dim)

    def backward_flop_count(self, tokens: int, layout: TokenLayout, batch_size: int = 1) -> int:
        """Backward FLOPs: 2x for the projections, 2.5x for the (fused, score-recomputing) attention."""
        proj = self._projection_flops(tokens)
        scores = 2 * 2 * self.attended_pairs(tokens, layout) * self.dim
        return batch_size * (2 * proj + (5 * scores) // 2)

    def extra_repr(self) -> str:
        return f"num_heads={self.num_heads}, window={self.window}, dilation={self.dilation}, attn_impl={self.attn_impl!r}"

