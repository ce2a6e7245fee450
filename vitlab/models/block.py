"""The pre-norm residual block (Xiong et al. 2020) shared by every block type: a token mixer
(attention, RoPE attention, Hyena 2D, or your own) and a feed-forward network, each behind a norm,
an optional LayerScale and drop path.

Axis legend: B batch, T tokens, D width.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from vitlab.config import build
from vitlab.kernels import residual_scale_drop
from vitlab.layers import DropPath, LayerScale
from vitlab.models.layout import TokenLayout

__all__ = ["Block"]


class Block(nn.Module):
    """``x + drop(ls1(mixer(norm1(x))))`` then ``x + drop(ls2(ffn(norm2(x))))``.

    Args:
        dim: width D (injected by the network).
        mixer: config or factory of a token mixer ``mixer(dim=, device=, dtype=)`` whose forward is
            ``(x [B, T, D], layout) -> [B, T, D]``.
        ffn: config or factory of the feed-forward network ``ffn(dim=, ...)``.
        norm: config or factory of the norm ``norm(dim=, ...)``.
        layer_scale_init: initial LayerScale value; None disables LayerScale.
        drop_path_rate: stochastic depth probability (injected per layer by the network).
    """

    CONFIG_ARGS: ClassVar[tuple[str, ...]] = ("mixer", "ffn", "norm")

    def __init__(self, dim: int, *, mixer: Any, ffn: Any, norm: Any, layer_scale_init: float | None = None,
                 drop_path_rate: float = 0.0, device=None, dtype=None):
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        self.norm1 = build(norm, dim=dim, **dd)
        self.mixer = build(mixer, dim=dim, **dd)
        self.ls1 = LayerScale(dim, init_values=layer_scale_init, **dd) if layer_scale_init else nn.Identity()
        self.drop_path1 = DropPath(drop_path_rate)
        self.norm2 = build(norm, dim=dim, **dd)
        self.ffn = build(ffn, dim=dim, **dd)
        self.ls2 = LayerScale(dim, init_values=layer_scale_init, **dd) if layer_scale_init else nn.Identity()
        self.drop_path2 = DropPath(drop_path_rate)
        self.kernels = "auto"

    def forward(self, x: torch.Tensor, layout: TokenLayout) -> torch.Tensor:
        x = self.residual(x, self.mixer(self.norm1(x), layout), self.ls1, self.drop_path1)
        x = self.residual(x, self.ffn(self.norm2(x)), self.ls2, self.drop_path2)
        return x

    def residual(self, x: torch.Tensor, y: torch.Tensor, ls: nn.Module, drop: DropPath) -> torch.Tensor:
        """``x + drop_path(gamma * y)`` in one pass (:func:`vitlab.kernels.residual_scale_drop`)."""
        gamma = ls.gamma if isinstance(ls, LayerScale) else None
        return residual_scale_drop(x, y, gamma, drop.drop_prob, self.training, backend=self.kernels)

    def flop_count(self, tokens: int, layout: TokenLayout, batch_size: int = 1) -> int:
        """Forward FLOPs of ``batch_size`` sequences of ``tokens`` tokens (see vitlab/flops.py)."""
        return self.mixer.flop_count(tokens, layout, batch_size) + batch_size * self.ffn.flop_count(tokens)

    def backward_flop_count(self, tokens: int, layout: TokenLayout, batch_size: int = 1) -> int:
        return self.mixer.backward_flop_count(tokens, layout, batch_size) + 2 * batch_size * self.ffn.flop_count(tokens)
