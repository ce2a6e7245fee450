"""Fused output gating of the Hyena operator (Poli et al. 2023, "Hyena Hierarchy"):
``out = (y + v * skip) * gate``.

After the long FFT convolution ``y = h * v`` the mixer adds the per-channel skip (Hyena's ``D``
term, a residual path through the filter) and multiplies by the gate branch. Eager torch makes
three passes and keeps two intermediates for autograd; the kernel makes one and recomputes.

Axis legend: B batch, C channels, L = product of the spatial dims (flattened), M = B*C rows.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from vitlab.kernels._triton import add_combine, as_rows, cdiv, lazy_jit, num_warps, tile_2d
from vitlab.kernels.dispatch import resolve_backend

if TYPE_CHECKING:  # bound to the real module at the first launch, see vitlab.kernels._triton
    import triton.language as tl  # noqa: TC004 - kernels see it only when jitted

__all__ = ["hyena_gate", "hyena_gate_op", "hyena_gate_reference"]


def _channel_view(skip: torch.Tensor, ndim: int) -> torch.Tensor:
    return skip.view((-1,) + (1,) * (ndim - 2))  # [C, 1, ...] broadcasts over spatial dims


def hyena_gate_reference(
    y: torch.Tensor, v: torch.Tensor, gate: torch.Tensor, skip: torch.Tensor
) -> torch.Tensor:
    """Plain torch ``(y + v * skip) * gate`` in float32, cast back to ``y.dtype``."""
    s = _channel_view(skip.float(), y.ndim)
    return ((y.float() + v.float() * s) * gate.float()).to(y.dtype)


@lazy_jit
def _hyena_gate_fwd_kernel(
    y_ptr, v_ptr, gate_ptr, skip_ptr, out_ptr, n_rows, n_cols, n_channels, stride_y, stride_v, stride_gate,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    row_ok = rows < n_rows
    mask = row_ok[:, None] & (cols < n_cols)[None, :]
    skip = tl.load(skip_ptr + rows % n_channels, mask=row_ok, other=0.0).to(tl.float32)[:, None]
    r = rows.to(tl.int64)[:, None]
    c = cols[None, :]
    y = tl.load(y_ptr + r * stride_y + c, mask=mask, other=0.0).to(tl.float32)
    v = tl.load(v_ptr + r * stride_v + c, mask=mask, other=0.0).to(tl.float32)
    gate = tl.load(gate_ptr + r * stride_gate + c, mask=mask, other=0.0).to(tl.float32)
    out = (y + v * skip) * gate
    tl.store(out_ptr + r * n_cols + c, out.to(out_ptr.dtype.element_ty), mask=mask)


@lazy_jit
def _hyena_gate_bwd_kernel(
    g_ptr, y_ptr, v_ptr, gate_ptr, skip_ptr, dy_ptr, dv_ptr, dgate_ptr, dskip_part_ptr,
    n_rows, n_cols, n_channels, stride_g, stride_y, stride_v, stride_gate,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, NEED_DSKIP: tl.constexpr,
):
    pid_n = tl.program_id(1)
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    row_ok = rows < n_rows
    mask = row_ok[:, None] & (cols < n_cols)[None, :]
    skip = tl.load(skip_ptr + rows % n_channels, mask=row_ok, other=0.0).to(tl.float32)[:, None]
    r = rows.to(tl.int64)[:, None]
    c = cols[None, :]
    g = tl.load(g_ptr + r * stride_g + c, mask=mask, other=0.0).to(tl.float32)
    y = tl.load(y_ptr + r * stride_y + c, mask=mask, other=0.0).to(tl.float32)
    v = tl.load(v_ptr + r * stride_v + c, mask=mask, other=0.0).to(tl.float32)
    gate = tl.load(gate_ptr + r * stride_gate + c, mask=mask, other=0.0).to(tl.float32)
    g_gate = g * gate
    tl.store(dy_ptr + r * n_cols + c, g_gate.to(dy_ptr.dtype.element_ty), mask=mask)
    tl.store(dv_ptr + r * n_cols + c, (g_gate * skip).to(dv_ptr.dtype.element_ty), mask=mask)
    tl.store(dgate_ptr + r * n_cols + c, (g * (y + v * skip)).to(dgate_ptr.dtype.element_ty), mask=mask)
    if NEED_DSKIP:
        # One partial sum per (column block, row); the host sums blocks and batch, which is
        # deterministic, unlike atomics into [C].
        part = tl.reduce(g_gate * v, 1, add_combine)
        tl.store(dskip_part_ptr + pid_n * n_rows + rows, part, mask=row_ok)


def _hyena_gate_forward(y, v, gate, skip):
    B, C = y.shape[:2]
    L = math.prod(y.shape[2:])
    y2, v2, g2 = as_rows(y, L), as_rows(v, L), as_rows(gate, L)
    out = torch.empty(y.shape, device=y.device, dtype=y.dtype)
    BLOCK_M, BLOCK_N = tile_2d(L, elements=2048)  # three inputs live at once: smaller tiles
    M = B * C
    if out.numel():
        grid = (cdiv(M, BLOCK_M), cdiv(L, BLOCK_N))
        _hyena_gate_fwd_kernel[grid](
            y2, v2, g2, skip.contiguous(), out, M, L, C, y2.stride(0), v2.stride(0), g2.stride(0),
            BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, num_warps=num_warps(3 * BLOCK_M * BLOCK_N),
        )
    return out


def _hyena_gate_backward(grad_out, y, v, gate, skip, need_dskip: bool):
    L = math.prod(y.shape[2:])
    y2, v2, g2, go = as_rows(y, L), as_rows(v, L), as_rows(gate, L), as_rows(grad_out, L)
    skip = skip.contiguous()
    M = y2.shape[0]
    C = skip.numel()
    dy = torch.empty(y.shape, device=y.device, dtype=y.dtype)
    dv = torch.empty(y.shape, device=v.device, dtype=v.dtype)
    dgate = torch.empty(y.shape, device=gate.device, dtype=gate.dtype)
    BLOCK_M, BLOCK_N = tile_2d(L, elements=2048)
    grid = (cdiv(M, BLOCK_M), cdiv(L, BLOCK_N))
    part = torch.empty((grid[1], M), device=y.device, dtype=torch.float32) if need_dskip else dy
    if dy.numel():
        _hyena_gate_bwd_kernel[grid](
            go, y2, v2, g2, skip, dy, dv, dgate, part, M, L, C,
            go.stride(0), y2.stride(0), v2.stride(0), g2.stride(0),
            BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, NEED_DSKIP=need_dskip,
            num_warps=num_warps(2 * BLOCK_M * BLOCK_N),
        )
    if not need_dskip:
        dskip = skip.new_empty(0)
    else:
        dskip = part.sum(0).view(-1, C).sum(0).to(skip.dtype) if dy.numel() else torch.zeros_like(skip)
    return dy, dv, dgate, dskip


# The Triton path as torch.library custom ops (forward and backward), so torch.compile sees each
# launch as one graph node; the backward saves the four inputs and recomputes ``y + v*skip``.
@torch.library.custom_op("vitlab::hyena_gate", mutates_args=())
def hyena_gate_op(y: torch.Tensor, v: torch.Tensor, gate: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
    return _hyena_gate_forward(y, v, gate, skip)


@hyena_gate_op.register_fake
def _(y, v, gate, skip):
    return y.new_empty(y.shape)


@torch.library.custom_op("vitlab::hyena_gate_backward", mutates_args=())
def _hyena_gate_backward_op(grad_out: torch.Tensor, y: torch.Tensor, v: torch.Tensor, gate: torch.Tensor,
                            skip: torch.Tensor, need_dskip: bool) -> tuple[torch.Tensor, torch.Tensor,
                                                                           torch.Tensor, torch.Tensor]:
    return _hyena_gate_backward(grad_out, y, v, gate, skip, need_dskip)


@_hyena_gate_backward_op.register_fake
def _(grad_out, y, v, gate, skip, need_dskip):
    return (y.new_empty(y.shape), v.new_empty(y.shape), gate.new_empty(y.shape),
            skip.new_empty(skip.shape if need_dskip else (0,)))


def _hyena_setup_context(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _hyena_autograd(ctx, grad_out):
    need_dskip = ctx.needs_input_grad[3]
    dy, dv, dgate, dskip = _hyena_gate_backward_op(grad_out, *ctx.saved_tensors, need_dskip)
    return dy, dv, dgate, dskip if need_dskip else None


hyena_gate_op.register_autograd(_hyena_autograd, setup_context=_hyena_setup_context)


def hyena_gate(
    y: torch.Tensor, v: torch.Tensor, gate: torch.Tensor, skip: torch.Tensor, backend: str = "auto"
) -> torch.Tensor:
    """Hyena's post-convolution chain ``(y + v * skip) * gate`` in one pass.

    Args:
        y: long-convolution output [B, C, *spatial] (channel-first).
        v: the convolution's input (value branch) [B, C, *spatial].
        gate: gate branch [B, C, *spatial].
        skip: per-channel skip weight [C] (Hyena's ``D``); may be float32 with half inputs.
        backend: ``"auto" | "triton" | "torch"`` (see :mod:`vitlab.kernels.dispatch`).

    Returns:
        [B, C, *spatial] in ``y.dtype``. Gradients flow to all four inputs.
    """
    if y.ndim < 2 or y.shape != v.shape or y.shape != gate.shape:
        raise ValueError(
            f"hyena_gate needs y, v, gate of one shape [B, C, *spatial], got {tuple(y.shape)}, "
            f"{tuple(v.shape)}, {tuple(gate.shape)}"
        )
    if skip.shape != (y.shape[1],):
        raise ValueError(f"hyena_gate needs skip of shape [C]=[{y.shape[1]}], got {tuple(skip.shape)}")
    if not (y.dtype == v.dtype == gate.dtype):
        raise TypeError(f"hyena_gate needs y, v, gate of one dtype, got {y.dtype}, {v.dtype}, {gate.dtype}")
    if resolve_backend(backend, y, v, gate, skip) == "torch":
        return hyena_gate_reference(y, v, gate, skip)
    return hyena_gate_op(y, v, gate, skip)
