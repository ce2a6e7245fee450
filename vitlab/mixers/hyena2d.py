"""Hyena-style 2D token mixer.

Hyena (Poli et al. 2023, "Hyena Hierarchy: Towards Larger Convolutional Language Models") replaces
attention by data-controlled gating interleaved with long convolutions whose filters are implicit
(produced by a small network). vitlab's 2D form follows HyenaPixel (Spravil et al. 2024, "HyenaPixel:
Global Image Context with Convolutions") and ViT-5's Hyena 2D blocks: the token sequence is viewed
as a ``(T / w) x w`` grid (patches fill the first rows; CLS, registers and zero padding the last),
the short filter is a depthwise 3x3 convolution on that grid, and the long convolution is a 2D FFT
convolution over the whole grid: a linear (non-circular) 2D convolution with a filter as large as the grid.

The long convolution runs by whichever of two exact algorithms is cheaper for the grid (as cuDNN and
FlashFFTConv pick per shape): **direct**, one dense ``[T, T]`` matrix per channel gathered from the filter
taps (a block-Toeplitz matrix; a batched matrix product, ``2 T^2`` FLOPs per channel and image), or **FFT**,
``rfft2`` of the input zero-padded to ``2R x 2W`` times the filter's spectrum (``~2 * 5 * 4T log2(4T)``).
The direct path pays once per call for its matrices (``D T^2`` values gathered from the
taps, read again by every product) and is cheaper per image, so ``long_conv="auto"`` takes it when the batch
is large enough for the grid: ``batch * DIRECT_TOKENS_PER_IMAGE >= T``, up to :data:`DIRECT_MAX_TOKENS` tokens;
both constants are crossovers measured by ``tools/bench_long_conv.py`` (``benchmarks/long_conv.md``,
``benchmarks/long_conv_batch.md``).
Both compute the same function (tested to
1e-5 in fp32, forward and gradients), and :meth:`Hyena2D.flop_count` counts the path that runs.

    u = in_proj(x) -> depthwise 3x3 -> gates g_0..g_{o-1}, value v      (o = order)
    v = v * g_{o-1}
    for i in 0..o-2:  v = (longconv(v, k_i) + skip_i * v) * g_{o-2-i}
    out = out_proj(v)

In eval mode without autograd the filter's matrix or spectrum depends only on the weights and the grid,
so :meth:`Hyena2D.long_filter` keeps it per grid size. The cache is dropped by ``train()`` and is keyed
on every filter tensor's storage and version counter (bumped by every in-place write: optimizer
steps, ``load_state_dict``, ``copy_``), so it never serves stale weights.

Axis legend: B batch, T tokens (a whole number R of grid rows of width W), D width, C channels.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from vitlab.kernels import hyena_gate, hyena_input_gate, resolve_kernels
from vitlab.kernels.dispatch import Backend
from vitlab.layers.token_layout import TokenLayout
from vitlab.mixers.implicit_filter import ImplicitFilter2D

__all__ = ["Hyena2D", "fft_flop_count", "toeplitz_index", "DIRECT_MAX_TOKENS", "DIRECT_TOKENS_PER_IMAGE"]

# When "auto" takes the direct long convolution: the crossovers of tools/bench_long_conv.py on the 2-core
# CPU (benchmarks/long_conv.md). Above 529 tokens the FFT won at every batch (24x24 = 576 tokens: FFT 1.4x
# faster at batch 28); below, the direct path won once the batch held about T / 12 images (width 384,
# forward + backward: from batch 4 at 49 tokens, 16 at 196, between 16 and 64 at 400).
DIRECT_MAX_TOKENS = 529
DIRECT_TOKENS_PER_IMAGE = 12


def _fft_input(t: torch.Tensor) -> torch.Tensor:
    """FFTs run in float32 for half inputs (cuFFT has no bf16, and fp16 only at powers of two), and
    at the input's own precision otherwise: no float64 -> float32 round trip."""
    return t if t.dtype in (torch.float32, torch.float64) else t.float()


def toeplitz_index(R: int, W: int, device=None) -> torch.Tensor:
    """``[T, T]`` indices into the flattened ``2R x 2W`` filter taps (T = R*W): entry ``(t, s)`` is the
    tap at offset ``t - s`` (rows and columns apart), laid out circularly as the filter stores it."""
    r = torch.arange(R, device=device).repeat_interleave(W)  # [T] row of each token
    w = torch.arange(W, device=device).repeat(R)  # [T] column
    return ((r[:, None] - r[None, :]) % (2 * R)) * (2 * W) + (w[:, None] - w[None, :]) % (2 * W)


def fft_flop_count(n: int) -> int:
    """FLOPs of one real FFT of ``n`` points, by the usual 5 N log2 N convention."""
    return int(5 * n * math.log2(n)) if n > 1 else 0


class _DirectConv(torch.autograd.Function):
    """``y[b, c] = m[c] @ v[b, c]`` (flattened grids) for ``v`` [B, D, R, W] laid out token-major (the
    in-projection's ``[B, T, D]`` seen channel-first: what the short convolution returns) and ``m`` [D, T, T].

    The batched product wants channel-major operands ``[D, B, T]``; handed strided views, torch's CPU ``bmm``
    copies them one matrix at a time (D small copies per call). This function transposes each operand once,
    whole (a blocked 2D transpose), and returns ``y`` token-major like ``v``, so the gates that follow read
    matching layouts.
    """

    @staticmethod
    def forward(ctx, v: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        B, D, R, W = v.shape
        vd = _channel_major(v)  # [D, B, T]
        ctx.save_for_backward(vd, m)
        return _token_major(torch.bmm(vd, m.transpose(1, 2)), R, W)

    @staticmethod
    def backward(ctx, gy: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        vd, m = ctx.saved_tensors
        gyd = _channel_major(gy)  # [D, B, T]
        dv = _token_major(torch.bmm(gyd, m), *gy.shape[2:]) if ctx.needs_input_grad[0] else None
        dm = torch.bmm(gyd.transpose(1, 2), vd) if ctx.needs_input_grad[1] else None  # [D, T, T]
        return dv, dm


def _channel_major(x: torch.Tensor) -> torch.Tensor:
    """``[B, D, R, W]`` (any layout) -> contiguous ``[D, B, R*W]``; from token-major storage by a 2D transpose."""
    B, D, R, W = x.shape
    if x.is_contiguous(memory_format=torch.channels_last):
        return x.permute(0, 2, 3, 1).reshape(B * R * W, D).t().contiguous().view(D, B, R * W)
    return x.permute(1, 0, 2, 3).reshape(D, B, R * W).contiguous()


def _token_major(yd: torch.Tensor, R: int, W: int) -> torch.Tensor:
    """Contiguous ``[D, B, T]`` -> ``[B, D, R, W]`` stored token-major (channels last), by a 2D transpose."""
    D, B, _ = yd.shape
    return yd.view(D, B * R * W).t().contiguous().view(B, R, W, D).permute(0, 3, 1, 2)


class Hyena2D(nn.Module):
    """Token mixer ``[B, T, D] -> [B, T, D]`` over the padded token grid.

    Args:
        dim: model width D (injected by the block).
        order: Hyena order o: o gates and o-1 long convolutions.
        filter_hidden, filter_layers, filter_bands: the implicit filter MLP.
        short_kernel: size of the depthwise short convolution.
        bias: biases of the projections.
        long_conv: how the long convolution runs: ``"direct"`` (a ``[T, T]`` matrix per channel), ``"fft"``,
            or ``"auto"``: the cheaper for the grid and batch (:meth:`path`).
        kernels: ``auto | triton | torch`` for its fused kernels (injected by the block; None:
            :func:`vitlab.kernels.resolve_kernels`).
    """

    needs_grid = True  # sees the padded sequence as a 2D grid
    pattern_letter = "H"  # its block letter in docs/models.md

    def __init__(self, dim: int, *, order: int = 2, filter_hidden: int = 64, filter_layers: int = 2,
                 filter_bands: int = 8, short_kernel: int = 3, bias: bool = True, long_conv: str = "auto",
                 kernels: Backend | None = None, device=None, dtype=None):
        super().__init__()
        if long_conv not in ("auto", "direct", "fft"):
            raise ValueError(f"Hyena2D long_conv must be 'auto', 'direct' or 'fft', got {long_conv!r}")
        if order < 2:
            raise ValueError(f"Hyena order must be >= 2, got {order}")
        if short_kernel % 2 != 1:
            raise ValueError(f"short_kernel must be odd, got {short_kernel}")
        dd = dict(device=device, dtype=dtype)
        self.dim, self.order, self.long_conv = dim, order, long_conv
        width = (order + 1) * dim
        self.in_proj = nn.Linear(dim, width, bias=bias, **dd)
        self.short_conv = nn.Conv2d(width, width, short_kernel, padding=short_kernel // 2, groups=width, **dd)
        self.filter = ImplicitFilter2D((order - 1) * dim, hidden=filter_hidden, num_layers=filter_layers,
                                       num_bands=filter_bands, **dd)
        self.skip = nn.Parameter(torch.ones(order - 1, dim, **dd))
        self.out_proj = nn.Linear(dim, dim, bias=bias, **dd)
        self.kernels = resolve_kernels(kernels)
        self._filter_cache: dict[tuple, tuple[tuple, list, torch.Tensor]] = {}

    def train(self, mode: bool = True) -> Hyena2D:
        self._filter_cache.clear()
        return super().train(mode)

    def path(self, tokens: int, batch_size: int) -> str:
        """The long convolution's algorithm for ``batch_size`` grids of ``tokens``: ``"direct"`` or ``"fft"``."""
        if self.long_conv != "auto":
            return self.long_conv
        direct = tokens <= DIRECT_MAX_TOKENS and batch_size * DIRECT_TOKENS_PER_IMAGE >= tokens
        return "direct" if direct else "fft"

    def _long_filter(self, R: int, W: int, path: str) -> torch.Tensor:
        k = self.filter(R, W).reshape(self.order - 1, self.dim, 2 * R, 2 * W)
        if path == "fft":
            return torch.fft.rfft2(_fft_input(k))  # [o-1, D, 2R, W+1]
        T = R * W
        return k.flatten(2).index_select(2, toeplitz_index(R, W, k.device).flatten()).view(self.order - 1, self.dim, T, T)

    def long_filter(self, R: int, W: int, path: str) -> torch.Tensor:
        """The long filters for an ``R x W`` grid as ``path`` uses them: the ``[o-1, D, T, T]`` matrices
        (``"direct"``) or the 2D FFT ``[o-1, D, 2R, W+1]`` (complex) of the taps (``"fft"``).

        Cached in eval mode when no gradient is recorded (and not under ``torch.compile``).
        """
        cacheable = not (self.training or torch.is_grad_enabled() or torch.compiler.is_compiling())
        if not cacheable:
            return self._long_filter(R, W, path)
        tensors = [*self.filter.parameters(), *self.filter.buffers()]
        # Holding the storages keeps their addresses from being reused while the entry lives.
        state = tuple((t.device, t.dtype, t.data_ptr(), t._version) for t in tensors)
        key = (R, W, path, torch.is_inference_mode_enabled())
        hit = self._filter_cache.get(key)
        if hit is not None and hit[0] == state:
            return hit[2]
        k = self._long_filter(R, W, path)
        if len(self._filter_cache) >= 4:  # a few grid sizes at most (each can be large)
            self._filter_cache.clear()
        self._filter_cache[key] = (state, [t.untyped_storage() for t in tensors], k)
        return k

    def forward(self, x: torch.Tensor, layout: TokenLayout) -> torch.Tensor:
        B, T, D = x.shape
        W = layout.grid_w
        if T % W:
            raise ValueError(f"Hyena2D needs whole grid rows: {T} tokens with grid width {W}; give it the padded sequence")
        R = T // W
        u = self.in_proj(x).transpose(1, 2).reshape(B, (self.order + 1) * D, R, W)
        *gates, v = self.short_conv(u).split(D, dim=1)  # each [B, D, R, W]
        path = self.path(T, B)
        k = self.long_filter(R, W, path)  # [o-1, D, T, T] (direct) or [o-1, D, 2R, W+1] (FFT)
        if path == "fft":  # v * g_{o-1}, and what the FFT reads: the kernel writes it zero-padded in float32
            v, v_in = hyena_input_gate(v, gates[-1], backend=self.kernels)
        else:
            v = v_in = v * gates[-1]
        for i in range(self.order - 1):
            # [B, D, R, W] views: the irfft2 output's corner (float32 for half v), or the matrix product.
            # A slice, not k[i]: the ONNX exporter slices complex tensors but cannot select from them.
            k_i = k[i : i + 1].squeeze(0)
            y = self._fft_conv(v_in, k_i, R, W) if path == "fft" else self._direct_conv(v, k_i)
            # (y + skip*v) * gate; the next long convolution reads it
            v = v_in = hyena_gate(y, v, gates[-2 - i], self.skip[i], backend=self.kernels)
        return self.out_proj(v.reshape(B, D, T).transpose(1, 2))

    @staticmethod
    def _direct_conv(v: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """Linear 2D convolution of ``v`` [B, D, R, W] as one ``[T, T]`` matrix per channel (``m`` [D, T, T],
        :meth:`long_filter`): a batched product over channels (:class:`_DirectConv`)."""
        return _DirectConv.apply(v, m.to(v.dtype))

    @staticmethod
    def _fft_conv(v: torch.Tensor, k_f: torch.Tensor, R: int, W: int) -> torch.Tensor:
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
        """Forward FLOPs: projections, depthwise conv, filter MLP, and the long convolutions by the path that
        runs (:meth:`path`): the matrix products, or the FFTs (filter FFTs once per batch)."""
        D, o, W = self.dim, self.order, layout.grid_w
        R = tokens // W
        k = self.short_conv.kernel_size[0]
        per_image = 2 * tokens * D * (o + 1) * D + 2 * (o + 1) * D * k * k * tokens + 2 * tokens * D * D
        per_batch = self.filter.flop_count(R, W)
        if self.path(tokens, batch_size) == "direct":
            per_image += 2 * (o - 1) * D * tokens * tokens
        else:
            per_image += 2 * (o - 1) * D * fft_flop_count(4 * R * W)  # rfft of v and irfft of the product
            per_batch += (o - 1) * D * fft_flop_count(4 * R * W)
        return batch_size * per_image + per_batch

    def backward_flop_count(self, tokens: int, layout: TokenLayout, batch_size: int = 1) -> int:
        """Backward FLOPs: 2x for projections, convolutions and the direct path's matrix products (input and
        filter gradients), 1x for FFTs and the filter's first layer (its input features need no gradient)."""
        D, o, W = self.dim, self.order, layout.grid_w
        R = tokens // W
        k = self.short_conv.kernel_size[0]
        per_image = 2 * (2 * tokens * D * (o + 1) * D + 2 * (o + 1) * D * k * k * tokens + 2 * tokens * D * D)
        first = 2 * 4 * R * W * self.filter.in_features * self.filter.hidden
        per_batch = 2 * self.filter.flop_count(R, W) - first
        if self.path(tokens, batch_size) == "direct":
            per_image += 2 * 2 * (o - 1) * D * tokens * tokens
        else:
            per_image += 2 * (o - 1) * D * fft_flop_count(4 * R * W)
            per_batch += (o - 1) * D * fft_flop_count(4 * R * W)
        return batch_size * per_image + per_batch
