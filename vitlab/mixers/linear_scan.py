"""The diagonal linear recurrence under Mamba's selective scan (Gu & Dao 2023, "Mamba: Linear-Time
Sequence Modeling with Selective State Spaces") and gated linear attention's chunk states (Yang et al.
2024, "Gated Linear Attention Transformers with Hardware-Efficient Training"):

    h[t] = exp(log_a[t]) * h[t-1] + b[t]        (h[-1] = 0; elementwise in every other axis)

Pure PyTorch, as a chunked parallel scan (no custom CUDA build): the sequence is cut into chunks of
``c`` steps; (1) a sequential scan runs inside every chunk at once, from a zero state; (2) a scan over
the ``n`` chunks carries each chunk's last state into the next; (3) every step adds the carried state,
decayed by ``exp(cumsum(log_a))`` from its chunk's start. That is ``c + n`` sequential steps (``2 sqrt(L)``
at ``c = ceil(sqrt(L))``, the default on GPUs) instead of ``L``. On CPU the default is one chunk: the plain
recurrence, one step at a time over whole ``[B, ...]`` slices, which ran faster there (on a
``[64, 197, 2, 128, 16]`` scan, Mamba 2D's on a batch of
global crops, 1.0 s against 3.2 s forward and backward at fp32 matmul 173 GFLOP/s:
``tools/bench_linear_scan.py``). Every exponent is a sum of ``log_a <= 0`` terms
taken forward in time, so nothing overflows, whatever the decay.

It is a ``torch.library`` custom op, so ``torch.compile`` sees one graph node, and ``FlopCounterMode``
counts it by the formula registered here (the counter has none for elementwise work). FLOP convention:
a recurrence counts its multiply-adds, one per element of ``b`` (2 FLOPs), however the chunked algorithm
evaluates it; the backward is the same recurrence run in reverse (the adjoint ``g[t] = dh[t] +
a[t+1] g[t+1]``), 1x forward, plus elementwise products (0).

Axis legend: B batch, L sequence (scanned, dim 1), ... any other axes, c chunk length, n chunks.
"""

from __future__ import annotations

import math

import torch
from torch.utils.flop_counter import register_flop_formula

__all__ = ["linear_scan", "linear_scan_reference"]


def _sequential(log_a: torch.Tensor, b: torch.Tensor, reverse: bool) -> torch.Tensor:
    """The recurrence one step at a time (``reverse``: from the end), each step written into the output."""
    a, h = log_a.exp(), torch.empty_like(b)
    steps = range(b.shape[1] - 1, -1, -1) if reverse else range(b.shape[1])
    prev = None
    for t in steps:
        if prev is None:
            h[:, t] = b[:, t]
        else:
            torch.addcmul(b[:, t], a[:, t], prev, out=h[:, t])
        prev = h[:, t]
    return h


def _scan(log_a: torch.Tensor, b: torch.Tensor, chunk_size: int) -> torch.Tensor:
    """The chunked scan forward in time of same-shape ``log_a``, ``b`` [B, L, ...]."""
    B, L = b.shape[:2]
    rest = b.shape[2:]
    c = max(1, min(chunk_size, L))
    n = -(-L // c)
    pad = n * c - L
    if pad:  # appended steps (no decay, no input) come after every real one: they change none of them
        log_a = torch.cat((log_a, log_a.new_zeros(B, pad, *rest)), dim=1)
        b = torch.cat((b, b.new_zeros(B, pad, *rest)), dim=1)
    log_a, b = log_a.view(B, n, c, *rest), b.view(B, n, c, *rest)
    a = log_a.exp()
    # (1) inside every chunk, from a zero state
    h = b[:, :, 0]
    local = [h]
    for t in range(1, c):
        h = a[:, :, t] * h + b[:, :, t]
        local.append(h)
    local = torch.stack(local, dim=2)  # [B, n, c, ...]
    # (2) the state entering every chunk
    decay = log_a.cumsum(dim=2).exp()  # [B, n, c, ...] decay from the chunk's start through t
    carry = torch.zeros_like(local[:, 0, 0])
    entering = []
    for j in range(n):
        entering.append(carry)
        carry = decay[:, j, -1] * carry + local[:, j, -1]
    # (3) each step adds the entering state, decayed to it
    h = local + decay * torch.stack(entering, dim=1).unsqueeze(2)
    return h.view(B, n * c, *rest)[:, :L]


def _compute_dtype(log_a: torch.Tensor, b: torch.Tensor) -> torch.dtype:
    """States accumulate in float32 at least (as mamba_ssm's kernel keeps them), float64 stays float64."""
    return torch.promote_types(torch.promote_types(log_a.dtype, b.dtype), torch.float32)


def linear_scan_reference(log_a: torch.Tensor, b: torch.Tensor, chunk_size: int, reverse: bool = False) -> torch.Tensor:
    """:func:`linear_scan`'s computation in plain torch ops (autograd records it); ``reverse`` scans from the end."""
    dtype = _compute_dtype(log_a, b)
    log_a, b = torch.broadcast_tensors(log_a.to(dtype), b.to(dtype))
    if chunk_size >= b.shape[1]:  # one chunk: the plain recurrence
        return _sequential(log_a.contiguous(), b.contiguous(), reverse)
    if reverse:
        return _scan(log_a.flip(1), b.flip(1), chunk_size).flip(1)
    return _scan(log_a.contiguous(), b.contiguous(), chunk_size)


@torch.library.custom_op("vitlab::linear_scan", mutates_args=())
def _linear_scan_op(log_a: torch.Tensor, b: torch.Tensor, chunk_size: int, reverse: bool) -> torch.Tensor:
    return linear_scan_reference(log_a, b, chunk_size, reverse).contiguous()  # as the fake promises


@_linear_scan_op.register_fake
def _(log_a, b, chunk_size, reverse):
    return b.new_empty(b.shape, dtype=_compute_dtype(log_a, b))


def _setup_context(ctx, inputs, output):
    log_a, _, chunk_size, reverse = inputs
    ctx.save_for_backward(log_a, output)
    ctx.chunk_size, ctx.reverse, ctx.b_dtype = chunk_size, reverse, inputs[1].dtype


def _backward(ctx, grad_h):
    log_a, h = ctx.saved_tensors
    # The adjoint runs the other way with every decay moved one step: g[t] = dh[t] + a[t+1] g[t+1].
    # ``h_before``: the state each step decays (h[t-1]; h[t+1] for a reverse scan).
    zero, h_zero = torch.zeros_like(log_a[:, :1]), torch.zeros_like(h[:, :1])
    if ctx.reverse:
        log_a_next, h_before = torch.cat((zero, log_a[:, :-1]), 1), torch.cat((h[:, 1:], h_zero), 1)
    else:
        log_a_next, h_before = torch.cat((log_a[:, 1:], zero), 1), torch.cat((h_zero, h[:, :-1]), 1)
    g = _linear_scan_op(log_a_next, grad_h, ctx.chunk_size, not ctx.reverse)
    grad_log_a = (g * h_before * log_a.to(g.dtype).exp()).sum_to_size(log_a.shape).to(log_a.dtype)
    return grad_log_a, g.to(ctx.b_dtype), None, None


_linear_scan_op.register_autograd(_backward, setup_context=_setup_context)


@register_flop_formula(torch.ops.vitlab.linear_scan)
def _linear_scan_flops(log_a_shape, b_shape, *args, out_shape=None, **kwargs) -> int:
    return 2 * math.prod(b_shape)  # one multiply-add per element and step


def linear_scan(log_a: torch.Tensor, b: torch.Tensor, *, chunk_size: int | None = None) -> torch.Tensor:
    """``h[t] = exp(log_a[t]) * h[t-1] + b[t]`` along dim 1, ``h[-1] = 0``, by the chunked parallel scan.

    Args:
        log_a: log decays [B, L, ...], ``<= 0`` for a stable recurrence; broadcastable to ``b``'s shape
            except along dim 1, where it must have all L steps.
        b: inputs [B, L, ...].
        chunk_size: steps per chunk; None: on CPU ``L`` (one chunk: the plain recurrence, step by step, which
            there ran 3.2x faster, forward and backward, than ``sqrt(L)`` chunks: ``tools/bench_linear_scan.py``), elsewhere
            ``ceil(sqrt(L))``, the fewest sequential steps.

    Returns:
        the states [B, L, ...] in ``b``'s shape, float32 for half inputs (float64 for float64).
    """
    if b.ndim < 2 or log_a.ndim != b.ndim or log_a.shape[1] != b.shape[1]:
        raise ValueError(f"linear_scan needs log_a and b of one rank with the sequence on dim 1, got "
                         f"{tuple(log_a.shape)} and {tuple(b.shape)}")
    if chunk_size is None:  # CPU: one chunk (the plain recurrence); GPU: the fewest sequential steps
        chunk_size = b.shape[1] if b.device.type == "cpu" else math.isqrt(max(b.shape[1] - 1, 0)) + 1
    if chunk_size < 1:
        raise ValueError(f"linear_scan chunk_size must be >= 1, got {chunk_size}")
    return _linear_scan_op(log_a, b, chunk_size, False)
