"""2D axial rotary position embedding (Su et al. 2021, RoFormer; axial 2D form as in Heo et al. 2024,
"Rotary Position Embedding for Vision Transformer"), with DINOv3's parametrization
(Siméoni et al. 2025): periods from ``base`` or from ``min_period``/``max_period``, coordinates in
[-1, 1] normalised by the grid's ``min``/``max`` side or each side ``separate``ly, and train-time
coordinate augmentation (shift, per-axis jitter, shared rescale).

A head of width ``head_dim`` is split in four quarters: the first half of the rotation angles
comes from the row coordinate, the second from the column coordinate, each over
``head_dim // 4`` periods, and the angles are tiled twice to pair with the rotate-half form.

Axis legend: N = h*w patch tokens, d = head_dim.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

__all__ = ["RotaryEmbedding2D"]


class RotaryEmbedding2D(nn.Module):
    """Sine/cosine tables of 2D axial RoPE for a patch grid.

    Args:
        head_dim: attention head width d; must be divisible by 4.
        base: period base (DINOv3 default 100); exclusive with ``min_period``/``max_period``.
        min_period, max_period: give both instead of ``base`` to space periods geometrically between them.
        normalize_coords: ``"separate"`` divides rows by h and columns by w; ``"max"``/``"min"`` divide
            both by max(h, w)/min(h, w).
        shift_coords: train-time uniform shift of the [-1, 1] coordinates in [-s, s] (per axis).
        jitter_coords: train-time per-axis scale, log-uniform in [1/j, j].
        rescale_coords: train-time scale shared by both axes, log-uniform in [1/r, r].
    """

    def __init__(
        self,
        head_dim: int,
        *,
        base: float | None = 100.0,
        min_period: float | None = None,
        max_period: float | None = None,
        normalize_coords: Literal["min", "max", "separate"] = "separate",
        shift_coords: float | None = None,
        jitter_coords: float | None = None,
        rescale_coords: float | None = None,
        device=None,
        dtype=None,
    ):
        super().__init__()
        if head_dim % 4 != 0:
            raise ValueError(f"2D RoPE needs head_dim divisible by 4, got head_dim={head_dim}")
        both = min_period is not None or max_period is not None
        if base is not None and both:
            raise ValueError(
                f"RoPE takes either base or min_period/max_period, got base={base}, "
                f"min_period={min_period}, max_period={max_period}"
            )
        if base is None and (min_period is None or max_period is None):
            raise ValueError(f"RoPE needs base, or both min_period and max_period (got {min_period}, {max_period})")
        if normalize_coords not in ("min", "max", "separate"):
            raise ValueError(f"normalize_coords must be 'min', 'max' or 'separate', got {normalize_coords!r}")
        self.head_dim, self.base = head_dim, base
        self.min_period, self.max_period = min_period, max_period
        self.normalize_coords = normalize_coords
        self.shift_coords, self.jitter_coords, self.rescale_coords = shift_coords, jitter_coords, rescale_coords
        self.register_buffer("periods", torch.empty(head_dim // 4, device=device, dtype=dtype), persistent=True)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.periods.device.type == "meta":
            return
        q = self.head_dim // 4
        if self.base is not None:
            periods = self.base ** (2 * torch.arange(q, dtype=torch.float32) / (self.head_dim // 2))
        else:
            ratio = self.max_period / self.min_period
            periods = ratio ** torch.linspace(0, 1, q, dtype=torch.float32) / ratio * self.max_period
        self.periods.copy_(periods.to(self.periods.device))

    @property
    def cache_key(self) -> tuple:
        """Identical tables (and, in training, one shared draw of the augmentation) per forward."""
        return ("rope2d", self.head_dim, self.base, self.min_period,
                self.max_period, self.normalize_coords, self.shift_coords, self.jitter_coords, self.rescale_coords,
                self.training)

    def coords(self, h: int, w: int, device) -> torch.Tensor:
        """Patch-centre coordinates in [-1, 1] (before augmentation): [N, 2] (row, column)."""
        kw = dict(device=device, dtype=torch.float32)
        if self.normalize_coords == "max":
            dh = dw = max(h, w)
        elif self.normalize_coords == "min":
            dh = dw = min(h, w)
        else:
            dh, dw = h, w
        ch = torch.arange(0.5, h, **kw) / dh
        cw = torch.arange(0.5, w, **kw) / dw
        coords = torch.stack(torch.meshgrid(ch, cw, indexing="ij"), dim=-1).flatten(0, 1)  # [N, 2]
        return 2.0 * coords - 1.0

    def forward(self, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(sin, cos)`` tables for an ``h x w`` grid, each [N, d] in float32."""
        device = self.periods.device
        coords = self.coords(h, w, device)
        if self.training:
            kw = dict(device=device, dtype=torch.float32)
            if self.shift_coords is not None:
                coords = coords + torch.empty(2, **kw).uniform_(-self.shift_coords, self.shift_coords)
            if self.jitter_coords is not None:
                j = math.log(self.jitter_coords)
                coords = coords * torch.empty(2, **kw).uniform_(-j, j).exp()
            if self.rescale_coords is not None:
                r = math.log(self.rescale_coords)
                coords = coords * torch.empty(1, **kw).uniform_(-r, r).exp()
        angles = 2 * math.pi * coords[:, :, None] / self.periods.float()[None, None, :]  # [N, 2, d/4]
        angles = angles.flatten(1, 2).tile(2)  # [N, d]
        return angles.sin(), angles.cos()

    def extra_repr(self) -> str:
        p = f"base={self.base}" if self.base is not None else f"min_period={self.min_period}, max_period={self.max_period}"
        return f"head_dim={self.head_dim}, {p}, normalize_coords={self.normalize_coords!r}"
