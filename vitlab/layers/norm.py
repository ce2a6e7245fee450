"""Normalisation layers with a ``dim`` argument, so a parent can inject its width:
LayerNorm (Ba et al. 2016) and RMSNorm (Zhang & Sennrich 2019).

FLOP convention (vitlab/flops.py): normalisation is elementwise and counts 0 FLOPs.
"""

from __future__ import annotations

import torch
from torch import nn

from vitlab.kernels import layer_norm, resolve_kernels, rms_norm
from vitlab.kernels.dispatch import Backend

__all__ = ["LayerNorm", "RMSNorm"]


class LayerNorm(nn.LayerNorm):
    """``nn.LayerNorm`` over the last dim; runs :func:`vitlab.kernels.layer_norm` on ``kernels``
    (``auto | triton | torch``; None: :func:`vitlab.kernels.resolve_kernels`'s default)."""

    def __init__(self, dim: int, *, eps: float = 1e-6, bias: bool = True, kernels: Backend | None = None,
                 device=None, dtype=None):
        super().__init__(dim, eps=eps, bias=bias, device=device, dtype=dtype)
        self.kernels = resolve_kernels(kernels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return layer_norm(x, self.weight, self.bias, self.eps, backend=self.kernels)


class RMSNorm(nn.RMSNorm):
    """``nn.RMSNorm`` over the last dim; runs :func:`vitlab.kernels.rms_norm` on ``kernels`` (as :class:`LayerNorm`)."""

    def __init__(self, dim: int, *, eps: float = 1e-6, kernels: Backend | None = None, device=None, dtype=None):
        super().__init__(dim, eps=eps, device=device, dtype=dtype)
        self.kernels = resolve_kernels(kernels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, self.weight, self.eps, backend=self.kernels)
