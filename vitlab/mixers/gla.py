"""Bidirectional gated linear attention over the 2D token layout, as ViG's BiGLA layer.

Gated linear attention (GLA; Yang et al. 2024, "Gated Linear Attention Transformers with
Hardware-Efficient Training") is linear attention with a data-dependent, per-key-channel forget gate
(:func:`~vitlab.mixers.chunk_gla.chunk_gla`). ViG (Liao et al. 2024, "ViG: Linear-complexity Visual
Sequence Learning with Gated Linear Attention") makes it a vision mixer, which this module follows
(section 3 and ``hustvl/ViG`` ``classification/models/vig.py``, ``GatedLinearAttention``):

- locality: a depthwise 3x3 convolution over the patch grid first (ViG-T/S/B configs: no bias, no
  activation); q, k, v, the gates and the output gate are projections of its output;
- bidirectional with direction-wise gating: the row-major sequence is scanned forward and backward with
  q, k, v shared by both directions and a forget gate of its own for each (one low-rank projection,
  ``dim -> 16 -> 2 dk``), ``g = logsigmoid(.) / 16``; the two outputs are averaged;
- 2D gating locality injection: ``out = o_proj(rmsnorm(o) * s + rmsnorm(local) * (1 - s))`` per head, with
  ``s = sigmoid(g_proj(local))`` mixing the global (GLA) and the local (convolution) features.

The value dimension equals ``dim`` (ViG's ``expand_v = 1``, which the locality gate needs); the key dimension
is ``expand_k * dim`` (ViG: 0.5). The chunked algorithm is GLA's (section 4), the bidirectional pass folds
both directions into the batch, as ViG's training path does (``o = (o_f + o_b.flip) / 2``).

Non-patch tokens: the sequence is the patches row-major, then CLS and registers (:mod:`vitlab.mixers.scan_order`),
as ViG appends its class token; they skip the convolution (ViG passes its class token through it
unchanged). Forward, they read every patch; backward, every patch reads them. Padding tokens (a block
padded by ``padding_types``) are neither scanned nor written: their outputs are zero and cost nothing.

FLOPs: projections and convolution 2 per multiply-add; the chunked attention by
:func:`~vitlab.mixers.chunk_gla.chunk_gla_flop_count` (a recurrence counts its multiply-adds).

Axis legend: B batch, T tokens (no padding), D width, H heads, dk = expand_k * D / H, dv = D / H,
K = 2 directions, r gate rank.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vitlab.kernels.dispatch import Backend
from vitlab.layers import RMSNorm
from vitlab.layers.token_layout import TokenLayout
from vitlab.mixers.chunk_gla import chunk_gla, chunk_gla_flop_count
from vitlab.mixers.scan_order import ScanMixer, conv_patches, merge_sequences, scan_sequences

__all__ = ["GLA2D"]


class GLA2D(ScanMixer):
    """Token mixer ``[B, T, D] -> [B, T, D]``: ViG's bidirectional gated linear attention.

    Args:
        dim: model width D (injected by the block).
        num_heads: H; ``dim`` and the key dimension must divide evenly.
        expand_k: key dimension ``expand_k * dim`` (ViG: 0.5).
        gate_rank: rank r of the forget-gate projection (ViG: 16).
        gate_logit_normalizer: divides ``logsigmoid`` of the gate logits: slower forgetting (ViG, GLA: 16).
        conv_kernel: size of the depthwise convolution over the patch grid (odd; ViG: 3).
        norm_eps: eps of the per-head RMSNorms of the global and local features.
        chunk_size: tokens per chunk of the chunked form (GLA's ``fused_chunk``: 16 to 64).
        kernels: of the two RMSNorms (injected by the block; None: :func:`vitlab.kernels.resolve_kernels`).
    """

    pattern_letter = "L"  # its block letter in docs/models.md

    def __init__(self, dim: int, *, num_heads: int, expand_k: float = 0.5, gate_rank: int = 16,
                 gate_logit_normalizer: float = 16.0, conv_kernel: int = 3, norm_eps: float = 1e-5,
                 chunk_size: int = 32, kernels: Backend | None = None, device=None, dtype=None):
        super().__init__()
        key_dim = int(expand_k * dim)
        if num_heads < 1 or dim % num_heads:
            raise ValueError(f"GLA2D dim={dim} is not divisible by num_heads={num_heads}")
        if key_dim < num_heads or key_dim % num_heads:
            raise ValueError(f"GLA2D key dim expand_k * dim = {expand_k} * {dim} = {key_dim} is not a positive "
                             f"multiple of num_heads={num_heads}")
        if gate_rank < 1:
            raise ValueError(f"GLA2D gate_rank must be >= 1, got {gate_rank}")
        if gate_logit_normalizer <= 0:
            raise ValueError(f"GLA2D gate_logit_normalizer must be positive, got {gate_logit_normalizer}")
        if conv_kernel < 1 or conv_kernel % 2 != 1:
            raise ValueError(f"GLA2D conv_kernel must be odd and positive, got {conv_kernel}")
        if chunk_size < 1:
            raise ValueError(f"GLA2D chunk_size must be >= 1, got {chunk_size}")
        dd = dict(device=device, dtype=dtype)
        self.dim, self.num_heads, self.key_dim, self.gate_rank = dim, num_heads, key_dim, gate_rank
        self.gate_logit_normalizer, self.chunk_size = gate_logit_normalizer, chunk_size
        self.conv = nn.Conv2d(dim, dim, conv_kernel, padding=conv_kernel // 2, groups=dim, bias=False, **dd)
        self.qkv = nn.Linear(dim, 2 * key_dim + dim, bias=False, **dd)
        self.gate_down = nn.Linear(dim, gate_rank, bias=False, **dd)
        self.gate_up = nn.Linear(gate_rank, 2 * key_dim, bias=True, **dd)  # forward and backward gates
        self.g_proj = nn.Linear(dim, dim, bias=True, **dd)  # the locality gate s
        self.g_norm = RMSNorm(dim // num_heads, eps=norm_eps, kernels=kernels, **dd)
        self.l_norm = RMSNorm(dim // num_heads, eps=norm_eps, kernels=kernels, **dd)
        self.o_proj = nn.Linear(dim, dim, bias=False, **dd)

    def forward(self, x: torch.Tensor, layout: TokenLayout) -> torch.Tensor:
        B, T_in, D = x.shape
        T = layout.num_tokens
        H, dk = self.num_heads, self.key_dim
        local = conv_patches(self._real_tokens(x, layout), layout, self.conv)  # [B, T, D]
        gates = F.logsigmoid(self.gate_up(self.gate_down(local))) / self.gate_logit_normalizer  # [B, T, 2 dk]
        seqs = scan_sequences(torch.cat((self.qkv(local), gates), dim=-1), layout, "bidirectional")  # [B, 2, T, ...]
        q, k, v, g_fwd, g_bwd = seqs.split((dk, dk, D, dk, dk), dim=-1)
        g = torch.stack((g_fwd[:, 0], g_bwd[:, 1]), dim=1)  # each direction its own forget gate
        heads = lambda t: t.flatten(0, 1).unflatten(-1, (H, -1)).transpose(1, 2)  # noqa: E731  [2B, H, T, d]
        o = chunk_gla(heads(q), heads(k), heads(v), heads(g), chunk_size=self.chunk_size)  # [2B, H, T, D/H]
        o = merge_sequences(o.transpose(1, 2).reshape(B, 2, T, D), layout, "bidirectional")  # [B, T, D]
        s = torch.sigmoid(self.g_proj(local)).unflatten(-1, (H, -1))  # [B, T, H, D/H]
        mixed = self.g_norm(o.unflatten(-1, (H, -1))) * s + self.l_norm(local.unflatten(-1, (H, -1))) * (1 - s)
        return self._pad_back(self.o_proj(mixed.flatten(2)), T_in)

    def _flops(self, layout: TokenLayout) -> tuple[int, tuple[int, int]]:
        """Per image: forward FLOPs of convolution and projections, and ``(forward, backward)`` of the attention."""
        D, H, dk, r, T = self.dim, self.num_heads, self.key_dim, self.gate_rank, layout.num_tokens
        k = self.conv.kernel_size[0]
        matmul = 2 * layout.num_patches * D * k * k + 2 * T * D * (2 * dk + D)  # conv, qkv
        matmul += 2 * T * D * r + 2 * T * r * 2 * dk + 2 * T * D * D + 2 * T * D * D  # gates, g_proj, o_proj
        return matmul, chunk_gla_flop_count(2, H, T, dk // H, D // H, self.chunk_size)
