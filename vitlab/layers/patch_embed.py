"""Patch embedding (Dosovitskiy et al. 2021, ViT): a stride-P convolution cuts the image into
P x P patches and projects each to ``dim`` channels."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["PatchEmbed"]


class PatchEmbed(nn.Module):
    def __init__(self, in_channels: int, dim: int, patch_size: int, *, bias: bool = True, device=None, dtype=None):
        super().__init__()
        self.in_channels, self.dim, self.patch_size = in_channels, dim, patch_size
        self.proj = nn.Conv2d(in_channels, dim, patch_size, stride=patch_size, bias=bias, device=device, dtype=dtype)

    def check_input(self, x: torch.Tensor) -> tuple[int, int]:
        """Raise ``ValueError`` for a wrong channel count or a size not divisible by the patch size."""
        if x.ndim != 4:
            raise ValueError(f"expected images [B, C, H, W], got a tensor of shape {tuple(x.shape)}")
        _, c, h, w = x.shape
        p = self.patch_size
        if c != self.in_channels:
            raise ValueError(f"input has {c} channels (shape {tuple(x.shape)}); the model expects in_channels={self.in_channels}")
        if h % p or w % p:
            raise ValueError(
                f"input size {h}x{w} (shape {tuple(x.shape)}) is not divisible by patch_size={p}; "
                "resize or crop the images first (vitlab never crops silently)"
            )
        return h // p, w // p

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Images [B, C, H, W] -> patch tokens [B, N = h*w, D] (row-major) and the grid (h, w)."""
        grid = self.check_input(x)
        return self.proj(x).flatten(2).transpose(1, 2), grid

    def flop_count(self, grid_h: int, grid_w: int) -> int:
        return 2 * grid_h * grid_w * self.dim * self.in_channels * self.patch_size**2
