"""The DINO projection head (Caron et al. 2021, "Emerging Properties in Self-Supervised Vision
Transformers"), in the form DINOv3 uses for both its DINO (CLS) and iBOT (patch) heads
(Simeoni et al. 2025, "DINOv3").

An MLP maps backbone tokens to a small bottleneck, which is L2-normalised, and a bias-free linear
layer ``last_layer`` scores it against K prototypes. The optimiser freezes ``last_layer`` during
the first epoch (DINOv3 ``freeze_last_layer_epochs``), so the name is part of the interface.

Axis legend: ``...`` leading axes (batch, tokens), D input width, K prototypes.
"""

from __future__ import annotations

from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm as _weight_norm

__all__ = ["DINOHead"]


class DINOHead(nn.Module):
    """MLP (GELU) -> bottleneck -> L2 normalisation -> prototypes.

    Args:
        in_dim: D, the backbone width.
        out_dim: K, the number of prototypes (DINOv3: 65536 for both heads).
        hidden_features: width of the hidden layers (DINOv3: 2048).
        bottleneck_dim: width of the normalised bottleneck (DINOv3: 256).
        nlayers: linear layers in the MLP (DINOv3: 3); 1 maps ``in_dim`` straight to the bottleneck.
        mlp_bias: bias in the MLP layers.
        weight_norm: weight-normalise ``last_layer`` with its gain frozen at 1, so every prototype
            has unit norm and the logits are cosines (DINO v1's ``norm_last_layer=True``). DINOv3
            trains a plain linear layer (``head_norm_last_layer: false``), the default here.
        train_gain: with ``weight_norm``, train each prototype's gain (initialised at 1) instead of freezing
            it, so the logits can grow past cosines (DINO v1's ``norm_last_layer=False``).
    """

    def __init__(self, in_dim: int, out_dim: int = 65536, *, hidden_features: int = 2048,
                 bottleneck_dim: int = 256, nlayers: int = 3, mlp_bias: bool = True, weight_norm: bool = False,
                 train_gain: bool = False, device=None, dtype=None):
        super().__init__()
        if nlayers < 1:
            raise ValueError(f"nlayers must be >= 1, got {nlayers}")
        if train_gain and not weight_norm:
            raise ValueError("train_gain=True needs weight_norm=True (the gain is weight normalisation's)")
        dd = {"device": device, "dtype": dtype}
        widths = [in_dim] + [hidden_features] * (nlayers - 1) + [bottleneck_dim]
        layers: list[nn.Module] = []
        for i, (w_in, w_out) in enumerate(pairwise(widths)):
            layers.append(nn.Linear(w_in, w_out, bias=mlp_bias, **dd))
            if i < nlayers - 1:
                layers.append(nn.GELU())
        self.mlp = nn.Sequential(*layers)
        self.last_layer = nn.Linear(bottleneck_dim, out_dim, bias=False, **dd)
        self.reset_parameters()
        if weight_norm:
            self.last_layer = _weight_norm(self.last_layer)
            gain = self.last_layer.parametrizations.weight.original0  # [K, 1]
            with torch.no_grad():
                gain.fill_(1.0)
            gain.requires_grad_(train_gain)

    def reset_parameters(self) -> None:
        # DINOv3 initialises every linear layer of the head, prototypes included, this way.
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x ``[..., D]``. Returns prototype logits ``[..., K]``."""
        z = self.mlp(x)  # [..., bottleneck]
        # float16 cannot represent 1e-12; DINOv3 uses the same switch.
        z = F.normalize(z, dim=-1, p=2, eps=1e-6 if z.dtype == torch.float16 else 1e-12)
        return self.last_layer(z)
