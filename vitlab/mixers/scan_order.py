"""How a sequence mixer reads the 2D token layout: the scan orders of Vision Mamba (Zhu et al. 2024,
"Vision Mamba: Efficient Visual Representation Learning with Bidirectional State Space Model") and
VMamba (Liu et al. 2024, "VMamba: Visual State Space Model", SS2D's cross-scan), and the depthwise
convolution over the patch grid that both (and ViG) put before the scan.

Every scanned sequence is the patch grid in one order followed by the CLS and register tokens (in the
layout's order); its reverse puts them first. A causal scan over both therefore lets every non-patch
token read every patch (forward: it comes last) and every patch read every non-patch token (reverse:
they come first), which is what a CLS token (a summary) and registers (global scratch space the
patches query) need. ViG places its class token at the end of the sequence the same way.

- ``"bidirectional"`` (Vim): the row-major sequence and its reverse, K = 2.
- ``"cross"`` (VMamba): row-major, its reverse, column-major, its reverse, K = 4.

:func:`merge_sequences` maps every direction's output back to layout order and averages them (Vim
averages its two directions; VMamba sums four and normalizes).

Axis legend: B batch, K directions, T tokens (h*w patches row-major, then CLS and registers; no padding), C channels.
"""

from __future__ import annotations

from typing import Callable

import torch

from vitlab.layers.token_layout import TokenLayout

__all__ = ["SCAN_DIRECTIONS", "scan_sequences", "merge_sequences", "conv_patches"]

SCAN_DIRECTIONS = {"bidirectional": 2, "cross": 4}


def _transpose_patches(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Tokens [B, T, C] with the ``h x w`` patches (row-major) read column-major; the rest unchanged."""
    B, _, C = x.shape
    patches = x[:, : h * w].view(B, h, w, C).transpose(1, 2).reshape(B, h * w, C)
    return torch.cat((patches, x[:, h * w :]), dim=1)


def scan_sequences(x: torch.Tensor, layout: TokenLayout, scan: str) -> torch.Tensor:
    """The ``K`` sequences a ``scan`` reads: [B, T, C] in layout order -> [B, K, T, C] in scan order."""
    if scan == "bidirectional":
        return torch.stack((x, x.flip(1)), dim=1)
    if scan == "cross":
        cols = _transpose_patches(x, layout.grid_h, layout.grid_w)
        return torch.stack((x, x.flip(1), cols, cols.flip(1)), dim=1)
    raise ValueError(f"scan must be one of {tuple(SCAN_DIRECTIONS)}, got {scan!r}")


def merge_sequences(y: torch.Tensor, layout: TokenLayout, scan: str) -> torch.Tensor:
    """The mean over directions of ``y`` [B, K, T, C] (scan order), each mapped back to layout order: [B, T, C]."""
    rows = y[:, 0] + y[:, 1].flip(1)
    if scan == "bidirectional":
        return rows / 2
    if scan == "cross":
        # the column-major patches, read back row-major: a w x h grid transposed
        cols = _transpose_patches(y[:, 2] + y[:, 3].flip(1), layout.grid_w, layout.grid_h)
        return (rows + cols) / 4
    raise ValueError(f"scan must be one of {tuple(SCAN_DIRECTIONS)}, got {scan!r}")


def conv_patches(x: torch.Tensor, layout: TokenLayout, conv: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``conv`` ([B, C, h, w] -> same) over the patch grid of ``x`` [B, T, C]; CLS and registers, which
    have no grid neighbours, pass through unchanged (as ViG passes its class token)."""
    B, _, C = x.shape
    h, w = layout.grid_h, layout.grid_w
    grid = x[:, : h * w].transpose(1, 2).reshape(B, C, h, w)
    return torch.cat((conv(grid).flatten(2).transpose(1, 2), x[:, h * w :]), dim=1)
