"""LayerScale (Touvron et al. 2021, "Going deeper with Image Transformers", CaiT): a learned
per-channel scale on each residual branch, initialised small."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["LayerScale"]


class LayerScale(nn.Module):
    def __init__(self, dim: int, *, init_values: float = 1e-5, device=None, dtype=None):
        super().__init__()
        self.init_values = init_values
        self.gamma = nn.Parameter(torch.empty(dim, device=device, dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.constant_(self.gamma, self.init_values)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma
