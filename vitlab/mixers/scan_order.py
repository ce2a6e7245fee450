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
from torch import nn

from vitlab.layers.token_layout import TokenLayout

__all__ = ["SCAN_DIRECTIONS", "ScanMixer", "scan_sequences", "merge_sequences", "conv_patches"]

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


class ScanMixer(nn.Module):
    """Base of the mixers that scan the tokens as sequences (:class:`~vitlab.mixers.GLA2D`,
    :class:`~vitlab.mixers.Mamba2D`).

    They mix the real tokens only: padding (a block padded by ``padding_types``) is neither scanned nor
    written, its output is zero (:meth:`_real_tokens`, :meth:`_pad_back`). Their FLOPs are a dense part
    (convolution and projections, 2x in the backward) and the scans' own forward and backward counts, per
    image from the subclass's ``_flops(layout) -> (dense, (scan forward, scan backward))``.
    """

    needs_grid = False  # reads the patch grid from the layout; padding tokens are not mixed

    def _real_tokens(self, x: torch.Tensor, layout: TokenLayout) -> torch.Tensor:
        """The tokens to mix, [B, T, D] of ``x`` [B, T_in, D] (T_in: the layout's tokens, or with its padding)."""
        T_in, T = x.shape[1], layout.num_tokens
        if T_in not in (T, layout.num_padded_tokens):
            raise ValueError(f"{type(self).__name__} got {T_in} tokens for a layout of {T} "
                             f"({layout.num_padded_tokens} padded)")
        return x[:, :T]

    @staticmethod
    def _pad_back(out: torch.Tensor, tokens: int) -> torch.Tensor:
        """The mixed tokens ``out`` [B, T, D] followed by zeros for the padding: [B, tokens, D]."""
        B, T, D = out.shape
        return out if tokens == T else torch.cat((out, out.new_zeros(B, tokens - T, D)), dim=1)

    def flop_count(self, tokens: int, layout: TokenLayout, batch_size: int = 1) -> int:
        """Forward FLOPs: the dense part and the scans of ``layout.num_tokens`` tokens (``tokens`` may include
        padding, which is not mixed)."""
        dense, scan = self._flops(layout)
        return batch_size * (dense + scan[0])

    def backward_flop_count(self, tokens: int, layout: TokenLayout, batch_size: int = 1) -> int:
        """Backward FLOPs: 2x for the dense part (input and weight gradients); the scans' own count."""
        dense, scan = self._flops(layout)
        return batch_size * (2 * dense + scan[1])

    def _flops(self, layout: TokenLayout) -> tuple[int, tuple[int, int]]:
        raise NotImplementedError
