"""Feed-forward networks: the transformer MLP with GELU (Vaswani et al. 2017; Hendrycks & Gimpel
2016) and SwiGLU (Shazeer 2020, "GLU Variants Improve Transformer")."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vitlab.kernels import swiglu

__all__ = ["Mlp", "SwiGLU"]


class Mlp(nn.Module):
    """``fc2(gelu(fc1(x)))`` with hidden width ``hidden_dim`` (default ``ratio * dim``)."""

    def __init__(self, dim: int, *, ratio: float = 4.0, hidden_dim: int | None = None, bias: bool = True,
                 device=None, dtype=None):
        super().__init__()
        hidden_dim = hidden_dim or int(dim * ratio)
        self.fc1 = nn.Linear(dim, hidden_dim, bias=bias, device=device, dtype=dtype)
        self.fc2 = nn.Linear(hidden_dim, dim, bias=bias, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))

    def flop_count(self, tokens: int) -> int:
        return 2 * tokens * (self.fc1.in_features * self.fc1.out_features + self.fc2.in_features * self.fc2.out_features)


class SwiGLU(nn.Module):
    """``w3(silu(x W1) * (x W2))``; ``w12`` holds W1 and W2 stacked so one matmul computes both.

    As in DINOv3, the hidden width is ``2/3 * ratio * dim`` rounded up to a multiple of ``align_to``,
    so the parameter count matches an MLP of the same ratio.
    """

    def __init__(self, dim: int, *, ratio: float = 4.0, hidden_dim: int | None = None, align_to: int = 8,
                 bias: bool = True, device=None, dtype=None):
        super().__init__()
        if hidden_dim is None:
            hidden_dim = int(int(dim * ratio) * 2 / 3)
            hidden_dim = (hidden_dim + align_to - 1) // align_to * align_to
        self.hidden_dim = hidden_dim
        self.w12 = nn.Linear(dim, 2 * hidden_dim, bias=bias, device=device, dtype=dtype)
        self.w3 = nn.Linear(hidden_dim, dim, bias=bias, device=device, dtype=dtype)
        self.kernels = "auto"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.w12(x).chunk(2, dim=-1)
        return self.w3(swiglu(a, b, backend=self.kernels))

    def flop_count(self, tokens: int) -> int:
        return 2 * tokens * (self.w12.in_features * self.w12.out_features + self.w3.in_features * self.w3.out_features)
