"""Fused output gating of the Hyena operator (Poli et al. 2023, "Hyena Hierarchy"):
``out = (y + v * skip) * gate``.

After the long FFT convolution ``y = h * v`` the mixer adds the per-channel skip (Hyena's ``D``
term, a residual path through the filter) and multiplies by the gate branch. Eager torch makes
three passes and keeps two intermediates for autograd; the kernel makes one and recomputes.

The kernel reads every input where it lies. ``y`` is the ``[..., :R, :W]`` corner of the float32
``irfft2`` output over the zero-padded ``2R x 2W`` grid (a strided view), ``v`` and ``gate`` are
channel slices of the short convolution's output: no crop copy, no slice copy. ``y`` is rounded
to ``v``'s dtype as it is loaded, which is what the mixer's ``y[..., :R, :W].to(v.dtype)`` did
before this kernel read it in place, so both backends and the old path compute the same function.

Autograd needs ``y`` for the gate's gradient. Keeping the view would keep the whole padded float32
buffer alive (4x ``y``'s elements, 8x its bytes for half activations), so when autograd records
the call and ``y`` is not a compact tensor of ``v``'s dtype, the forward also writes the rounded
``y`` compactly, in the same pass, and the backward reads that.

Axis legend: B batch, C channels, H x W the spatial dims as :func:`as_bchw` views them,
M = B*C*H rows of W elements each.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from vitlab.kernels._triton import add_combine, as_bchw, bchw_strides, cdiv, lazy_jit, num_warps, tile_2d
from vitlab.kernels.dispatch import resolve_backend

if TYPE_CHECKING:  # bound to the real module at the first launch, see vitlab.kernels._triton
    import triton.language as tl  # noqa: TC004 - kernels see it only when jitted

__all__ = ["hyena_gate", "hyena_gate_op", "hyena_gate_reference"]


def _channel_view(skip: torch.Tensor, ndim: int) -> torch.Tensor:
    return skip.view((-1,) + (1,) * (ndim - 2))  # [C, 1, ...] broadcasts over spatial dims


def hyena_gate_reference(
    y: torch.Tensor, v: torch.Tensor, gate: torch.Tensor, skip: torch.Tensor
) -> torch.Tensor:
    """Plain torch ``(y + v * skip) * gate`` in float32 with ``y`` first rounded to ``v.dtype``;
    returns ``v.dtype``."""
    s = _channel_view(skip.float(), y.ndim)
    return ((y.to(v.dtype).float() + v.float() * s) * gate.float()).to(v.dtype)


@lazy_jit
def _hyena_gate_fwd_kernel(
    y_ptr, v_ptr, gate_ptr, skip_ptr, out_ptr, y_kept_ptr, n_rows, n_cols, n_channels, height,
    y_sb, y_sc, y_sh, v_sb, v_sc, v_sh, gate_sb, gate_sc, gate_sh,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, KEEP_Y: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    row_ok = rows < n_rows
    mask = row_ok[:, None] & (cols < n_cols)[None, :]
    bc = rows // height  # row = (b * C + c) * H + h
    b, c, h = (bc // n_channels).to(tl.int64), bc % n_channels, (rows % height).to(tl.int64)
    skip = tl.load(skip_ptr + c, mask=row_ok, other=0.0).to(tl.float32)[:, None]
    c = c.to(tl.int64)
    w = cols[None, :]
    y = tl.load(y_ptr + (b * y_sb + c * y_sc + h * y_sh)[:, None] + w, mask=mask, other=0.0)
    y = y.to(out_ptr.dtype.element_ty)  # rounded to v's dtype, as the reference does
    v = tl.load(v_ptr + (b * v_sb + c * v_sc + h * v_sh)[:, None] + w, mask=mask, other=0.0).to(tl.float32)
    gate = tl.load(gate_ptr + (b * gate_sb + c * gate_sc + h * gate_sh)[:, None] + w, mask=mask, other=0.0)
    out = (y.to(tl.float32) + v * skip) * gate.to(tl.float32)
    dense = rows.to(tl.int64)[:, None] * n_cols + w
    tl.store(out_ptr + dense, out.to(out_ptr.dtype.element_ty), mask=mask)
    if KEEP_Y:
        tl.store(y_kept_ptr + dense, y, mask=mask)


@lazy_jit
def _hyena_gate_bwd_kernel(
    g_ptr, y_ptr, v_ptr, gate_ptr, skip_ptr, dy_ptr, dv_ptr, dgate_ptr, dskip_part_ptr,
    n_rows, n_cols, n_channels, height,
    g_sb, g_sc, g_sh, y_sb, y_sc, y_sh, v_sb, v_sc, v_sh, gate_sb, gate_sc, gate_sh,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, NEED_DSKIP: tl.constexpr,
):
    pid_n = tl.program_id(1)
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    row_ok = rows < n_rows
    mask = row_ok[:, None] & (cols < n_cols)[None, :]
    bc = rows // height
    b, c, h = (bc // n_channels).to(tl.int64), bc % n_channels, (rows % height).to(tl.int64)
    skip = tl.load(skip_ptr + c, mask=row_ok, other=0.0).to(tl.float32)[:, None]
    c = c.to(tl.int64)
    w = cols[None, :]
    g = tl.load(g_ptr + (b * g_sb + c * g_sc + h * g_sh)[:, None] + w, mask=mask, other=0.0).to(tl.float32)
    y = tl.load(y_ptr + (b * y_sb + c * y_sc + h * y_sh)[:, None] + w, mask=mask, other=0.0)
    y = y.to(dv_ptr.dtype.element_ty).to(tl.float32)  # the forward's y, rounded to v's dtype
    v = tl.load(v_ptr + (b * v_sb + c * v_sc + h * v_sh)[:, None] + w, mask=mask, other=0.0).to(tl.float32)
    gate = tl.load(gate_ptr + (b * gate_sb + c * gate_sc + h * gate_sh)[:, None] + w, mask=mask, other=0.0)
    g_gate = g * gate.to(tl.float32)
    dense = rows.to(tl.int64)[:, None] * n_cols + w
    tl.store(dy_ptr + dense, g_gate.to(dy_ptr.dtype.element_ty), mask=mask)
    tl.store(dv_ptr + dense, (g_gate * skip).to(dv_ptr.dtype.element_ty), mask=mask)
    tl.store(dgate_ptr + dense, (g * (y + v * skip)).to(dgate_ptr.dtype.element_ty), mask=mask)
    if NEED_DSKIP:
        # One partial sum per (column block, row); the host sums blocks, rows and batch, which is
        # deterministic, unlike atomics into [C].
        part = tl.reduce(g_gate * v, 1, add_combine)
        tl.store(dskip_part_ptr + pid_n * n_rows + rows, part, mask=row_ok)


def _hyena_gate_forward(y, v, gate, skip, keep_y: bool):
    y4, v4, g4 = as_bchw(y), as_bchw(v), as_bchw(gate)
    B, C, H, W = y4.shape
    out = torch.empty(y.shape, device=v.device, dtype=v.dtype)
    y_kept = torch.empty(y.shape if keep_y else (0,), device=v.device, dtype=v.dtype)
    BLOCK_M, BLOCK_N = tile_2d(W, elements=2048)  # three inputs live at once: smaller tiles
    M = B * C * H
    if out.numel():
        grid = (cdiv(M, BLOCK_M), cdiv(W, BLOCK_N))
        _hyena_gate_fwd_kernel[grid](
            y4, v4, g4, skip.contiguous(), out, y_kept if keep_y else out, M, W, C, H,
            *bchw_strides(y4), *bchw_strides(v4), *bchw_strides(g4),
            BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, KEEP_Y=keep_y, num_warps=num_warps(3 * BLOCK_M * BLOCK_N),
        )
    return out, y_kept


def _hyena_gate_backward(grad_out, y, v, gate, skip, y_dtype: torch.dtype, need_dskip: bool):
    go4, y4, v4, g4 = as_bchw(grad_out), as_bchw(y), as_bchw(v), as_bchw(gate)
    B, C, H, W = y4.shape
    skip = skip.contiguous()
    M = B * C * H
    dy = torch.empty(y.shape, device=y.device, dtype=y_dtype)
    dv = torch.empty(y.shape, device=v.device, dtype=v.dtype)
    dgate = torch.empty(y.shape, device=gate.device, dtype=gate.dtype)
    BLOCK_M, BLOCK_N = tile_2d(W, elements=2048)
    grid = (cdiv(M, BLOCK_M), cdiv(W, BLOCK_N))
    part = torch.empty((grid[1], M), device=y.device, dtype=torch.float32) if need_dskip else dy
    if dy.numel():
        _hyena_gate_bwd_kernel[grid](
            go4, y4, v4, g4, skip, dy, dv, dgate, part, M, W, C, H,
            *bchw_strides(go4), *bchw_strides(y4), *bchw_strides(v4), *bchw_strides(g4),
            BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, NEED_DSKIP=need_dskip,
            num_warps=num_warps(2 * BLOCK_M * BLOCK_N),
        )
    if not need_dskip:
        dskip = skip.new_empty(0)
    else:
        dskip = part.sum(0).view(B, C, H).sum((0, 2)).to(skip.dtype) if dy.numel() else torch.zeros_like(skip)
    return dy, dv, dgate, dskip


# The Triton path as torch.library custom ops (forward and backward), so torch.compile sees each
# launch as one graph node. The forward returns ``(out, y_kept)``: the compact rounded ``y`` when
# ``keep_y`` (empty otherwise), which the backward reads in place of ``y``; it recomputes ``y + v*skip``.
@torch.library.custom_op("vitlab::hyena_gate", mutates_args=())
def hyena_gate_op(y: torch.Tensor, v: torch.Tensor, gate: torch.Tensor, skip: torch.Tensor,
                  keep_y: bool) -> tuple[torch.Tensor, torch.Tensor]:
    return _hyena_gate_forward(y, v, gate, skip, keep_y)


@hyena_gate_op.register_fake
def _(y, v, gate, skip, keep_y):
    return v.new_empty(y.shape), v.new_empty(y.shape if keep_y else (0,))


@torch.library.custom_op("vitlab::hyena_gate_backward", mutates_args=())
def _hyena_gate_backward_op(grad_out: torch.Tensor, y: torch.Tensor, v: torch.Tensor, gate: torch.Tensor,
                            skip: torch.Tensor, y_dtype: torch.dtype, need_dskip: bool
                            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    return _hyena_gate_backward(grad_out, y, v, gate, skip, y_dtype, need_dskip)


@_hyena_gate_backward_op.register_fake
def _(grad_out, y, v, gate, skip, y_dtype, need_dskip):
    return (y.new_empty(y.shape, dtype=y_dtype), v.new_empty(y.shape), gate.new_empty(y.shape),
            skip.new_empty(skip.shape if need_dskip else (0,)))


def _hyena_setup_context(ctx, inputs, output):
    y, v, gate, skip, keep_y = inputs
    _, y_kept = output
    ctx.save_for_backward(y_kept if keep_y else y, v, gate, skip)
    ctx.y_dtype = y.dtype
    ctx.mark_non_differentiable(y_kept)
    ctx.set_materialize_grads(False)


def _hyena_autograd(ctx, grad_out, _grad_kept):
    if grad_out is None:  # the output was not used
        return None, None, None, None, None
    need_dskip = ctx.needs_input_grad[3]
    dy, dv, dgate, dskip = _hyena_gate_backward_op(grad_out, *ctx.saved_tensors, ctx.y_dtype, need_dskip)
    return dy, dv, dgate, dskip if need_dskip else None, None


hyena_gate_op.register_autograd(_hyena_autograd, setup_context=_hyena_setup_context)


def hyena_gate(
    y: torch.Tensor, v: torch.Tensor, gate: torch.Tensor, skip: torch.Tensor, backend: str = "auto"
) -> torch.Tensor:
    """Hyena's post-convolution chain ``(y + v * skip) * gate`` in one pass.

    Args:
        y: long-convolution output [B, C, *spatial] (channel-first), in ``v``'s dtype or float32
            (rounded to ``v``'s dtype before use); any strides, e.g. a crop of the ``irfft2`` output.
        v: the convolution's input (value branch) [B, C, *spatial]; may be a strided view.
        gate: gate branch [B, C, *spatial] in ``v``'s dtype; may be a strided view.
        skip: per-channel skip weight [C] (Hyena's ``D``); may be float32 with half inputs.
        backend: ``"auto" | "triton" | "torch"`` (see :mod:`vitlab.kernels.dispatch`).

    Returns:
        [B, C, *spatial] in ``v.dtype``. Gradients flow to all four inputs.
    """
    if y.ndim < 2 or y.shape != v.shape or y.shape != gate.shape:
        raise ValueError(
            f"hyena_gate needs y, v, gate of one shape [B, C, *spatial], got {tuple(y.shape)}, "
            f"{tuple(v.shape)}, {tuple(gate.shape)}"
        )
    if skip.shape != (y.shape[1],):
        raise ValueError(f"hyena_gate needs skip of shape [C]=[{y.shape[1]}], got {tuple(skip.shape)}")
    if v.dtype != gate.dtype:
        raise TypeError(f"hyena_gate needs v and gate of one dtype, got {v.dtype} and {gate.dtype}")
    if y.dtype not in (v.dtype, torch.float32):
        raise TypeError(f"hyena_gate needs y in v's dtype ({v.dtype}) or float32, got {y.dtype}")
    if resolve_backend(backend, y, v, gate, skip) == "torch":
        return hyena_gate_reference(y, v, gate, skip)
    recorded = torch.is_grad_enabled() and any(t.requires_grad for t in (y, v, gate, skip))
    keep_y = recorded and not (y.dtype == v.dtype and y.is_contiguous())
    return hyena_gate_op(y, v, gate, skip, keep_y)[0]
