"""Implicit long 2D convolution filter, as in Hyena (Poli et al. 2023, "Hyena Hierarchy: Towards
Larger Convolutional Language Models") lifted to two dimensions (HyenaPixel, Spravil et al. 2024;
ViT-5's 2D mixers): a small MLP with sine activations maps features of a 2D offset to one filter
tap per channel, and an exponential decay window in the offset's radius keeps it local at first.

Because the filter is a function of continuous, normalised offsets, it is evaluated for whatever
grid the input has (any image size, padded layouts included).

For an ``R x W`` token grid the filter covers every offset a linear (non-circular) convolution
needs, ``|dy| < R`` and ``|dx| < W``, laid out circularly on a ``2R x 2W`` grid: offset ``d`` sits at
index ``d mod 2R`` and the unused row/column (``|d| = R``, ``|d| = W``) is zero. A ``2R x 2W``
circular convolution of the zero-padded input then equals the linear one on the ``R x W`` output.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["ImplicitFilter2D"]


class Sin(nn.Module):
    """``sin(freq * x)`` with a learned frequency per unit (Hyena's filter activation)."""

    def __init__(self, dim: int, *, device=None, dtype=None):
        super().__init__()
        self.freq = nn.Parameter(torch.ones(dim, device=device, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.freq * x)


def _circular_offsets(n: int, device) -> torch.Tensor:
    """``[0, 1, .., n-1, -n, .., -1]`` [2n]: the offsets of a length-``2n`` circular layout, the values (and
    dtype) of ``torch.fft.fftfreq(2n, 1 / 2n)``, written with ``arange`` because ONNX has no ``fftfreq``."""
    k = torch.arange(2 * n, device=device, dtype=torch.get_default_dtype())
    return torch.where(k < n, k, k - 2 * n)


class ImplicitFilter2D(nn.Module):
    """Filter taps ``[channels, 2R, 2W]`` for an ``R x W`` grid.

    Args:
        channels: number of independent filters (one per channel and long convolution).
        hidden: MLP width.
        num_layers: sine-activated hidden layers.
        num_bands: sinusoidal frequency bands per axis in the offset features.
        fast_decay, slow_decay: the window decays to ``1e-2`` at radius ``fast_decay`` for the first
            channel and at ``slow_decay`` for the last (Hyena's exponential modulation).
    """

    def __init__(self, channels: int, *, hidden: int = 64, num_layers: int = 2, num_bands: int = 8,
                 fast_decay: float = 0.3, slow_decay: float = 1.5, device=None, dtype=None):
        super().__init__()
        self.channels, self.hidden, self.num_bands = channels, hidden, num_bands
        self.in_features = 2 + 4 * num_bands
        dd = dict(device=device, dtype=dtype)
        layers: list[nn.Module] = [nn.Linear(self.in_features, hidden, **dd), Sin(hidden, **dd)]
        for _ in range(num_layers - 1):
            layers += [nn.Linear(hidden, hidden, **dd), Sin(hidden, **dd)]
        layers.append(nn.Linear(hidden, channels, bias=False, **dd))
        self.mlp = nn.Sequential(*layers)
        target = math.log(1e-2)
        decay = torch.linspace(-target / slow_decay, -target / fast_decay, channels, device=device)
        self.register_buffer("decay", decay, persistent=False)

    def init_weights(self) -> None:
        """Default (Kaiming-uniform) init for the filter MLP, kept apart from the network's."""
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                m.reset_parameters()
            elif isinstance(m, Sin):
                nn.init.ones_(m.freq)

    def offsets(self, rows: int, cols: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised circular offsets ``(dy [2R], dx [2W])`` and the valid-tap mask [2R, 2W]."""
        dy, dx = _circular_offsets(rows, device), _circular_offsets(cols, device)
        valid = (dy.abs() < rows)[:, None] & (dx.abs() < cols)[None, :]
        scale = float(max(rows, cols))
        return dy / scale, dx / scale, valid

    def features(self, rows: int, cols: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        dy, dx, valid = self.offsets(rows, cols, device)
        y, x = torch.meshgrid(dy, dx, indexing="ij")  # [2R, 2W] each
        bands = torch.arange(1, self.num_bands + 1, device=device, dtype=torch.float32) * math.pi
        ay, ax = y[..., None] * bands, x[..., None] * bands
        feats = torch.cat((y[..., None], x[..., None], ay.sin(), ay.cos(), ax.sin(), ax.cos()), dim=-1)
        return feats, torch.sqrt(y * y + x * x), valid  # [2R, 2W, F], [2R, 2W], [2R, 2W]

    def forward(self, rows: int, cols: int) -> torch.Tensor:
        device = self.decay.device
        feats, radius, valid = self.features(rows, cols, device)
        taps = self.mlp(feats.to(self.mlp[0].weight.dtype))  # [2R, 2W, C]
        window = torch.exp(-radius[..., None] * self.decay) * valid[..., None]
        return (taps * window).permute(2, 0, 1)  # [C, 2R, 2W]

    def flop_count(self, rows: int, cols: int) -> int:
        points = 4 * rows * cols
        macs = self.in_features * self.hidden + sum(
            m.in_features * m.out_features for m in list(self.mlp)[2:] if isinstance(m, nn.Linear)
        )
        return 2 * points * macs
