"""The pre-norm residual block (Xiong et al. 2020) shared by every block type: a token mixer
(attention, RoPE attention, Hyena 2D, or your own) and a feed-forward network, each behind a norm
and joined to the residual stream by a :class:`~vitlab.layers.ResidualBranch` (optional LayerScale
and drop path, fused).

Axis legend: B batch, T tokens, D width.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from vitlab.compat import renamed_kwargs
from vitlab.config import ModuleFactory, build
from vitlab.kernels import resolve_kernels
from vitlab.kernels.dispatch import Backend
from vitlab.layers import ResidualBranch
from vitlab.layers.token_layout import TokenLayout

__all__ = ["Block"]


class Block(nn.Module):
    """``x = ls1(x, mixer(norm1(x)))`` then ``x = ls2(x, ffn(norm2(x)))``, each ``x + drop_path(gamma * y)``.

    The residual branches keep DINOv3's and timm's name, ``ls1``/``ls2``, so the LayerScale weights
    load from ``blocks.N.ls1.gamma`` as they always have.

    Args:
        dim: width D (injected by the network).
        mixer_layer: factory (or config) of a token mixer ``mixer_layer(dim=, kernels=, device=, dtype=)`` whose
            forward is ``(x [B, T, D], layout) -> [B, T, D]``.
        ffn_layer: factory (or config) of the feed-forward network ``ffn_layer(dim=, kernels=, ...)``.
        norm_layer: factory (or config) of the two norms ``norm_layer(dim=, kernels=, ...)``.
        layer_scale_init: initial LayerScale value; None disables LayerScale.
        drop_path_rate: stochastic depth probability (injected per layer by the network).
        kernels: ``auto | triton | torch``, the fused kernels of every part (injected by the network, and by
            the block into its parts as ``dim`` is; None: :func:`vitlab.kernels.resolve_kernels`).
    """

    CONFIG_ARGS: ClassVar[tuple[str, ...]] = ("mixer_layer", "ffn_layer", "norm_layer")

    @renamed_kwargs(mixer="mixer_layer", ffn="ffn_layer", norm="norm_layer")
    def __init__(self, dim: int, *, mixer_layer: ModuleFactory, ffn_layer: ModuleFactory, norm_layer: ModuleFactory,
                 layer_scale_init: float | None = None, drop_path_rate: float = 0.0, kernels: Backend | None = None,
                 device=None, dtype=None):
        super().__init__()
        parts = dict(kernels=resolve_kernels(kernels), device=device, dtype=dtype)  # what each part gets besides dim
        branch = dict(layer_scale_init=layer_scale_init, drop_path_rate=drop_path_rate, **parts)
        self.norm1 = build(norm_layer, dim=dim, **parts)
        self.mixer = build(mixer_layer, dim=dim, **parts)
        self.ls1 = ResidualBranch(dim, **branch)
        self.norm2 = build(norm_layer, dim=dim, **parts)
        self.ffn = build(ffn_layer, dim=dim, **parts)
        self.ls2 = ResidualBranch(dim, **branch)

    def forward(self, x: torch.Tensor, layout: TokenLayout) -> torch.Tensor:
        x = self.ls1(x, self.mixer(self.norm1(x), layout))
        x = self.ls2(x, self.ffn(self.norm2(x)))
        return x

    def flop_count(self, tokens: int, layout: TokenLayout, batch_size: int = 1) -> int:
        """Forward FLOPs of ``batch_size`` sequences of ``tokens`` tokens (see vitlab/flops.py)."""
        return self.mixer.flop_count(tokens, layout, batch_size) + batch_size * self.ffn.flop_count(tokens)

    def backward_flop_count(self, tokens: int, layout: TokenLayout, batch_size: int = 1) -> int:
        return self.mixer.backward_flop_count(tokens, layout, batch_size) + 2 * batch_size * self.ffn.flop_count(tokens)
