"""The residual branch of a pre-norm block: ``x + drop_path(gamma * y)``, with LayerScale (Touvron
et al. 2021, "Going deeper with Image Transformers", CaiT) and stochastic depth (Huang et al. 2016,
"Deep Networks with Stochastic Depth") applied in one fused pass.

The module owns what that line needs, the LayerScale ``gamma`` and the drop-path rate, and its
forward is the line, so hooks and ``print(model)`` show what runs.

Axis legend: B batch, D width.
"""

from __future__ import annotations

import torch
from torch import nn

from vitlab.kernels import residual_scale_drop, resolve_kernels
from vitlab.kernels.dispatch import Backend

__all__ = ["ResidualBranch"]


class ResidualBranch(nn.Module):
    """``forward(x, y) = x + drop_path(gamma * y)``: branch output ``y`` joins the residual stream ``x``.

    Args:
        dim: width D.
        layer_scale_init: initial LayerScale value; None (or 0) for no LayerScale (``gamma`` is None).
        drop_path_rate: probability in [0, 1) of dropping a sample's branch in training.
        kernels: ``auto | triton | torch`` for the fused kernel (None: :func:`vitlab.kernels.resolve_kernels`).
    """

    def __init__(self, dim: int, *, layer_scale_init: float | None = None, drop_path_rate: float = 0.0,
                 kernels: Backend | None = None, device=None, dtype=None):
        super().__init__()
        if not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {drop_path_rate}")
        self.dim, self.drop_path_rate = dim, drop_path_rate
        self.layer_scale_init = layer_scale_init or None
        if self.layer_scale_init is None:
            self.register_parameter("gamma", None)
        else:
            self.gamma = nn.Parameter(torch.empty(dim, device=device, dtype=dtype))  # [D]
        self.kernels = resolve_kernels(kernels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.gamma is not None:
            nn.init.constant_(self.gamma, self.layer_scale_init)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Residual stream ``x`` and branch output ``y`` [B, ..., D] -> [B, ..., D]."""
        return residual_scale_drop(x, y, self.gamma, self.drop_path_rate, self.training, backend=self.kernels)

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, layer_scale_init={self.layer_scale_init}, "
                f"drop_path_rate={self.drop_path_rate}")
