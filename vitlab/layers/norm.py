"""Normalisation layers with a ``dim`` argument, so a parent can inject its width:
LayerNorm (Ba et al. 2016) and RMSNorm (Zhang & Sennrich 2019).

FLOP convention (vitlab/flops.py): normalisation is elementwise and counts 0 FLOPs.
"""

from __future__ import annotations

from torch import nn

__all__ = ["LayerNorm", "RMSNorm"]


class LayerNorm(nn.LayerNorm):
    def __init__(self, dim: int, *, eps: float = 1e-6, bias: bool = True, device=None, dtype=None):
        super().__init__(dim, eps=eps, bias=bias, device=device, dtype=dtype)


class RMSNorm(nn.RMSNorm):
    def __init__(self, dim: int, *, eps: float = 1e-6, device=None, dtype=None):
        super().__init__(dim, eps=eps, device=device, dtype=dtype)
