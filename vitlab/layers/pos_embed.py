"""Learned absolute position embedding (ViT), resampled bicubically for other grid sizes
(as DeiT/DINOv2 do for fine-tuning at a new resolution).

As in timm's ViT and DINOv2, ``num_prefix`` extra vectors (one for the CLS token) are stored first,
so the parameter has timm's shape ``[1, num_prefix + h*w, D]``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LearnedPosEmbed", "resample_grid"]


def resample_grid(pe: torch.Tensor, old: tuple[int, int], new: tuple[int, int]) -> torch.Tensor:
    """A ``[1, h0*w0, D]`` embedding of the ``old`` grid resampled bicubically to the ``new`` one: ``[1, h1*w1, D]``."""
    if tuple(old) == tuple(new):
        return pe
    grid = pe.reshape(1, old[0], old[1], -1).permute(0, 3, 1, 2)  # [1, D, h0, w0]
    grid = F.interpolate(grid.float(), size=tuple(new), mode="bicubic", align_corners=False)
    return grid.to(pe.dtype).permute(0, 2, 3, 1).reshape(1, new[0] * new[1], -1)


class LearnedPosEmbed(nn.Module):
    """One learned vector per patch of a ``grid_h x grid_w`` reference grid, plus ``num_prefix``."""

    def __init__(self, dim: int, grid_h: int, grid_w: int, *, num_prefix: int = 0, device=None, dtype=None):
        super().__init__()
        self.grid_h, self.grid_w, self.num_prefix = grid_h, grid_w, num_prefix
        self.pos_embed = nn.Parameter(torch.empty(1, num_prefix + grid_h * grid_w, dim, device=device, dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if not self.pos_embed.is_meta:
            nn.init.trunc_normal_(self.pos_embed, std=0.02)

    def prefix_pos_embed(self) -> torch.Tensor:
        """The ``num_prefix`` vectors of the prefix tokens (CLS): [1, num_prefix, D]."""
        return self.pos_embed[:, : self.num_prefix]

    def forward(self, patches: torch.Tensor, grid_h: int, grid_w: int) -> torch.Tensor:
        """Patch tokens [B, h*w, D] plus the embedding of a ``grid_h x grid_w`` grid: [B, h*w, D].

        The addition happens here, not in the caller: a module that returned (a view of) its
        parameter would, under ``torch.no_grad``, hand out a tensor with ``requires_grad`` and no
        ``grad_fn``, on which torch's module tracker (``FlopCounterMode``) fails.
        """
        pe = self.pos_embed[:, self.num_prefix :]  # [1, h0*w0, D]
        return patches + resample_grid(pe, (self.grid_h, self.grid_w), (grid_h, grid_w))
