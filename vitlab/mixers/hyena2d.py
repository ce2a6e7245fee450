"""Hyena-style 2D token mixer.

Hyena (Poli et al. 2023, "Hyena Hierarchy: Towards Larger Convolutional Language Models") replaces
attention by data-controlled gating interleaved with long convolutions whose filters are implicit
(produced by a small network). vitlab's 2D form follows HyenaPixel (Spravil et al. 2024, "HyenaPixel:
Global Image Context with Convolutions") and ViT-5's Hyena 2D blocks: the token sequence is viewed
as a ``(T / w) x w`` grid (patches fill the first rows; CLS, registers and zero padding the last),
the short filter is a depthwise 3x3 convolution on that grid, and the long convolution is a 2D FFT
convolution over the whole grid, zero-padded to ``2R x 2W`` so nothing wraps around.

    u = in_proj(x) -> depthwise 3x3 -> gates g_0..g_{o-1}, value v      (o = order)
    v = v * g_{o-1}
    for i in 0..o-2:  v = (longconv(v, k_i) + skip_i * v) * g_{o-2-i}
    out = out_proj(v)

In eval mode without autograd the filter's FFT depends only on the weights and the grid, so
:meth:`Hyena2D.filter_fft` keeps it per grid size. The cache is dropped by ``train()`` and is keyed
on every filter tensor's storage and version counter (bumped by every in-place write: optimizer
steps, ``load_state_dict``, ``copy_``), so it never serves stale weights.

Axis legend: B batch, T tokens (a whole number R of grid rows of width W), D width, C channels.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from vitlab.kernels import hyena_gate, hyena_input_gate
from vitlab.mixers.implicit_filter import ImplicitFilter2D
from vitlab.models.layout import TokenLayout

__all__ = ["Hyena2D", "fft_flop_count"]


def _fft_input(t: torch.Tensor) -> torch.Tensor:
    """FFTs run in float32 for half inputs (cuFFT has no bf16, and fp16 only at powers of two), and
    at the input's own precision otherwise: no float64 -> float32 round trip."""
    return t if t.dtype in (torch.float32, torch.float64) else t.float()


def fft_flop_count(n: int) -> int:
    """FLOPs of one real FFT of ``n`` points, by the usual 5 N log2 N convention."""
    return int(5 * n * math.log2(n)) if n > 1 else 0


class Hyena2D(nn.Module):
    """Token mixer ``[B, T, D] -> [B, T, D]`` over the padded token grid.

    Args:
        dim: model width D (injected by the block).
        order: Hyena order o: o gates and o-1 long convolutions.
        filter_hidden, filter_layers, filter_bands: the implicit filter MLP.
        short_kernel: size of the depthwise short convolution.
        bias: biases of the projections.
    """

    needs_grid = True  # sees the padded sequence as a 2D grid

    def __init__(self, dim: int, *, order: int = 2, filter_hidden: int = 64, filter_layers: int = 2,
                 filter_bands: int = 8, short_kernel: int = 3, bias: bool = True, device=None, dtype=None):
        super().__init__()
        if order < 2:
            raise ValueError(f"Hyena order must be >= 2, got {order}")
        if short_kernel % 2 != 1:
            raise ValueError(f"short_kernel must be odd, got {short_kernel}")
        dd = dict(device=device, dtype=dtype)
        self.dim, self.order = dim, order
        width = (order + 1) * dim
        self.in_proj = nn.Linear(dim, width, bias=bias, **dd)
        self.short_conv = nn.Conv2d(width, width, short_kernel, padding=short_kernel // 2, groups=width, **dd)
        self.filter = ImplicitFilter2D((order - 1) * dim, hidden=filter_hidden, num_layers=filter_layers,
                                       num_bands=filter_bands, **dd)
        self.skip = nn.Parameter(torch.ones(order - 1, dim, **dd))
        self.out_proj = nn.Linear(dim, dim, bias=bias, **dd)
        self.kernels = "auto"
        self._filter_fft_cache: dict[tuple, tuple[tuple, list, torch.Tensor]] = {}

    def train(self, mode: bool = True) -> Hyena2D:
        self._filter_fft_cache.clear()
        return super().train(mode)

    def _filter_fft(self, R: int, W: int) -> torch.Tensor:
        k = self.filter(R, W).reshape(self.order - 1, self.dim, 2 * R, 2 * W)
        return torch.fft.rfft2(_fft_input(k))  # [o-1, D, 2R, W+1]

    def filter_fft(self, R: int, W: int) -> torch.Tensor:
        """The long filters' 2D FFT ``[o-1, D, 2R, W+1]`` (complex) for an ``R x W`` grid.

        Cached in eval mode when no gradient is recorded (and not under ``torch.compile``).
        """
        cacheable = not (self.training or torch.is_grad_enabled() or torch.compiler.is_compiling())
        if not cacheable:
            return self._filter_fft(R, W)
        tensors = [*self.filter.parameters(), *self.filter.buffers()]
        # Holding the storages keeps their addresses from being reused while the entry lives.
        state = tuple((t.device, t.dtype, t.data_ptr(), t._version) for t in tensors)
        key = (R, W, torch.is_inference_mode_enabled())
        hit = self._filter_fft_cache.get(key)
        if hit is not None and hit[0] == state:
            return hit[2]
        k_f = self._filter_fft(R, W)
        if len(self._filter_fft_cache) >= 4:  # a few grid sizes at most (each can be large)
            self._filter_fft_cache.clear()
        self._filter_fft_cache[key] = (state, [t.untyped_storage() for t in tensors], k_f)
        return k_f

    def forward(self, x: torch.Tensor, layout: TokenLayout) -> torch.Tensor:
        B, T, D = x.shape
        W = layout.grid_w
        if T % W:
            raise ValueError(f"Hyena2D needs whole grid rows: {T} tokens with grid width {W}; give it the padded sequence")
        R = T // W
        u = self.in_proj(x).transpose(1, 2).reshape(B, (self.order + 1) * D, R, W)
        *gates, v = self.short_conv(u).split(D, dim=1)  # each [B, D, R, W]
        k_f = self.filter_fft(R, W)  # [o-1, D, 2R, W+1]
        # v * g_{o-1}, and what the FFT reads: the kernel writes it zero-padded to [B, D, 2R, 2W] in float32
        v, v_fft = hyena_input_gate(v, gates[-1], backend=self.kernels)
        for i in range(self.order - 1):
            y = self._long_conv(v_fft, k_f[i], R, W)  # [B, D, R, W], float32 for half v: read in place
            # (y + skip*v) * gate; the next long convolution reads it
            v = v_fft = hyena_gate(y, v, gates[-2 - i], self.skip[i], backend=self.kernels)
        return self.out_proj(v.reshape(B, D, T).transpose(1, 2))

    @staticmethod
    def _long_conv(v: torch.Tensor, k_f: torch.Tensor, R: int, W: int) -> torch.Tensor:
        """Linear 2D convolution of ``v`` [B, D, R, W] (or ``v`` already zero-padded to [B, D, 2R, 2W])
        with the filter spectrum ``k_f`` [D, 2R, W+1]: the [B, D, R, W] corner of the ``irfft2`` output,
        a view at the FFT's precision (float32 for half ``v``), which :func:`hyena_gate` reads in place."""
        v_f = torch.fft.rfft2(_fft_input(v), s=(2 * R, 2 * W))  # [B, D, 2R, W+1]
        # Without autograd the spectral product can overwrite v_f: one [B, D, 2R, W+1] complex
        # buffer less at inference (autograd needs v_f itself for the filter's gradient).
        recording = torch.is_grad_enabled() and (v.requires_grad or k_f.requires_grad)
        product = v_f * k_f if recording else v_f.mul_(k_f)
        return torch.fft.irfft2(product, s=(2 * R, 2 * W))[..., :R, :W]

    def flop_count(self, tokens: int, layout: TokenLayout, batch_size: int = 1) -> int:
        """Forward FLOPs: projections, depthwise conv, filter MLP and FFTs (filter FFTs once per batch)."""
        D, o, W = self.dim, self.order, layout.grid_w
        R = tokens // W
        k = self.short_conv.kernel_size[0]
        per_image = 2 * tokens * D * (o + 1) * D + 2 * (o + 1) * D * k * k * tokens + 2 * tokens * D * D
        per_image += 2 * (o - 1) * D * fft_flop_count(4 * R * W)  # rfft of v and irfft of the product
        per_batch = self.filter.flop_count(R, W) + (o - 1) * D * fft_flop_count(4 * R * W)
        return batch_size * per_image + per_batch

    def backward_flop_count(self, tokens: int, layout: TokenLayout, batch_size: int = 1) -> int:
        """Backward FLOPs: 2x for projections and convolutions, 1x for FFTs and the filter's first layer
        (its input features need no gradient)."""
        D, o, W = self.dim, self.order, layout.grid_w
        R = tokens // W
        k = self.short_conv.kernel_size[0]
        per_image = 2 * (2 * tokens * D * (o + 1) * D + 2 * (o + 1) * D * k * k * tokens + 2 * tokens * D * D)
        per_image += 2 * (o - 1) * D * fft_flop_count(4 * R * W)
        first = 2 * 4 * R * W * self.filter.in_features * self.filter.hidden
        per_batch = 2 * self.filter.flop_count(R, W) - first + (o - 1) * D * fft_flop_count(4 * R * W)
        return batch_size * per_image + per_batch
