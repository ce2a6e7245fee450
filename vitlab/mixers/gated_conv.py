"""Gated depthwise-convolution token mixer: MambaOut's Gated CNN block (Yu and Wang 2024, "MambaOut: Do We
Really Need Mamba for Vision?"; the gated linear unit of Dauphin et al. 2017 with a ConvNeXt-style
depthwise convolution, Liu et al. 2022), as timm's ``mambaout.GatedConvBlock`` without its norm and residual
(vitlab's :class:`~vitlab.models.Block` holds those).

    g, i, c = split(fc1(x))              widths hidden, hidden - C, C   (hidden = expansion_ratio * D)
    c = depthwise k x k conv of c over the patch grid                   (C = conv_ratio * D channels)
    out = fc2(gelu(g) * cat(i, c))

Non-patch tokens (CLS, registers, and padding when a layout pads this block) have no place on the grid.
Each is treated as an image of its own of one pixel, zero-padded like the grid's border: its convolution
is the kernel's centre tap plus the bias, so every token's conv channels pass through the same
per-channel map and the gate sees them on one scale. The patches' convolution never reads them (a
register is not a neighbour of the last grid row), so patch outputs are exactly timm's block on the grid.

FLOPs: the two projections over all T tokens and ``2 C k^2`` per patch for the convolution; the centre-tap
scale of the non-patch tokens is elementwise (0 by vitlab's convention, as ``FlopCounterMode`` counts it).

Axis legend: B batch, T tokens (patches first), N = h*w patches, D width, C conv channels.
"""

from __future__ import annotations

import torch
from torch import nn

from vitlab.kernels.dispatch import Backend
from vitlab.layers.token_layout import TokenLayout

__all__ = ["GatedConv"]


class GatedConv(nn.Module):
    """Token mixer ``[B, T, D] -> [B, T, D]``: a GLU whose value branch is depthwise-convolved on the patch grid.

    Args:
        dim: model width D (injected by the block).
        expansion_ratio: hidden width ``int(expansion_ratio * dim)`` (MambaOut: 8/3).
        kernel_size: side of the depthwise convolution (odd; MambaOut: 7).
        conv_ratio: share of ``dim`` convolved, ``int(conv_ratio * dim)`` channels; the rest of the value
            branch passes through (MambaOut: 1.0; partial channels as in InceptionNeXt).
        kernels: taken, as every mixer takes it; this one has no fused kernel.
    """

    needs_grid = False  # convolves the h x w patch grid itself; the sequence needs no padding
    pattern_letter = "C"  # its block letter in docs/models.md

    def __init__(self, dim: int, *, expansion_ratio: float = 8 / 3, kernel_size: int = 7, conv_ratio: float = 1.0,
                 kernels: Backend | None = None, device=None, dtype=None):
        super().__init__()
        if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"GatedConv kernel_size must be an odd positive integer (same-size output), got {kernel_size!r}")
        hidden, conv_channels = int(expansion_ratio * dim), int(conv_ratio * dim)
        if hidden < 1:
            raise ValueError(f"GatedConv expansion_ratio={expansion_ratio} gives no hidden channels at dim={dim}")
        if not 0 < conv_channels <= hidden:
            raise ValueError(f"GatedConv conv_ratio={conv_ratio} gives {conv_channels} conv channels at dim={dim}; "
                             f"need between 1 and the hidden width {hidden}")
        dd = dict(device=device, dtype=dtype)
        self.dim, self.hidden, self.conv_channels, self.kernel_size = dim, hidden, conv_channels, kernel_size
        self.split_sizes = (hidden, hidden - conv_channels, conv_channels)  # gate, identity, conv: timm's order
        self.fc1 = nn.Linear(dim, 2 * hidden, **dd)
        self.act = nn.GELU()
        self.conv = nn.Conv2d(conv_channels, conv_channels, kernel_size, padding=kernel_size // 2,
                              groups=conv_channels, **dd)
        self.fc2 = nn.Linear(hidden, dim, **dd)

    def init_weights(self) -> None:
        """MambaOut's init for the convolution (timm ``MambaOut._init_weights``): truncated normal, std 0.02,
        zero bias; the network initialises the linears the same way."""
        nn.init.trunc_normal_(self.conv.weight, std=0.02)
        nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor, layout: TokenLayout) -> torch.Tensor:
        B, T, _ = x.shape
        h, w, N, C = layout.grid_h, layout.grid_w, layout.num_patches, self.conv_channels
        g, i, c = self.fc1(x).split(self.split_sizes, dim=-1)
        grid = c[:, :N].reshape(B, h, w, C).permute(0, 3, 1, 2)  # [B, C, h, w], channels last in memory
        patches = self.conv(grid).permute(0, 2, 3, 1).reshape(B, N, C)
        k = self.kernel_size // 2
        others = c[:, N:] * self.conv.weight[:, 0, k, k] + self.conv.bias  # a one-pixel image each: [B, T - N, C]
        c = torch.cat((patches, others), dim=1)
        return self.fc2(self.act(g) * torch.cat((i, c), dim=-1))

    def flop_count(self, tokens: int, layout: TokenLayout, batch_size: int = 1) -> int:
        """Forward FLOPs: ``fc1`` and ``fc2`` over all tokens, the depthwise convolution over the patches."""
        D, Hd, C, k = self.dim, self.hidden, self.conv_channels, self.kernel_size
        return batch_size * (2 * tokens * D * 2 * Hd + 2 * tokens * Hd * D + 2 * C * k * k * layout.num_patches)

    def backward_flop_count(self, tokens: int, layout: TokenLayout, batch_size: int = 1) -> int:
        """Backward FLOPs: 2x forward (input and weight gradients of the projections and the convolution)."""
        return 2 * self.flop_count(tokens, layout, batch_size)

    def extra_repr(self) -> str:
        return f"hidden={self.hidden}, conv_channels={self.conv_channels}, kernel_size={self.kernel_size}"
