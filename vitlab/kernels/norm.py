"""Fused residual add + LayerNorm (Ba et al. 2016) / RMSNorm (Zhang & Sennrich 2019).

A pre-norm block computes ``s = x + branch`` and then ``norm(s)`` for the next branch; eager
torch writes ``s``, reads it back for the statistics and again for the normalisation. Here one
program holds whole rows in registers: it adds, stores ``s`` (the caller carries it as the
next residual), computes mean/rstd in float32 and writes the normalised rows. The backward
recomputes ``x_hat`` from ``s`` and the saved per-row statistics, and reduces the weight/bias
gradients in per-program partial sums.

Axis legend: M rows (all leading dims flattened), D normalised width (last dim).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import torch
import torch.nn.functional as F

from vitlab.kernels._triton import (
    add_combine,
    as_rows,
    cdiv,
    lazy_jit,
    next_power_of_2,
    num_warps,
    program_budget,
    row_tile,
    split_programs,
)
from vitlab.kernels.dispatch import resolve_backend

if TYPE_CHECKING:  # bound to the real module at the first launch, see vitlab.kernels._triton
    import triton.language as tl  # noqa: TC004 - kernels see it only when jitted

__all__ = [
    "MAX_WIDTH", "add_norm_op", "layer_norm", "layer_norm_reference", "rms_norm", "rms_norm_reference",
]

MAX_WIDTH = 16384  # a row lives in registers; wider rows would spill, use backend="torch"


def layer_norm_reference(x, weight, bias, eps, residual=None):
    """Plain torch ``layer_norm(x + residual)``, statistics in float32; ``(y, s)`` with a residual."""
    s = x if residual is None else x + residual
    w = None if weight is None else weight.float()
    b = None if bias is None else bias.float()
    y = F.layer_norm(s.float(), (s.shape[-1],), w, b, eps).to(x.dtype)
    return y if residual is None else (y, s)


def rms_norm_reference(x, weight, eps, residual=None):
    """Plain torch ``rms_norm(x + residual)``, statistics in float32; ``(y, s)`` with a residual."""
    s = x if residual is None else x + residual
    w = None if weight is None else weight.float()
    y = F.rms_norm(s.float(), (s.shape[-1],), w, eps).to(x.dtype)
    return y if residual is None else (y, s)


@lazy_jit
def _norm_fwd_kernel(
    x_ptr, res_ptr, w_ptr, b_ptr, y_ptr, s_ptr, mean_ptr, rstd_ptr,
    n_rows, n_cols, stride_x, stride_res, eps,
    IS_RMS: tl.constexpr, HAS_RESIDUAL: tl.constexpr, HAS_WEIGHT: tl.constexpr, HAS_BIAS: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    cols = tl.arange(0, BLOCK_N)
    col_ok = cols < n_cols
    rows, row_ok, mask, r = row_tile(tl.program_id(0) * BLOCK_M, n_rows, col_ok, BLOCK_M)
    c = cols[None, :]
    s = tl.load(x_ptr + r * stride_x + c, mask=mask, other=0.0).to(tl.float32)
    if HAS_RESIDUAL:
        s = s + tl.load(res_ptr + r * stride_res + c, mask=mask, other=0.0).to(tl.float32)
        s_io = s.to(s_ptr.dtype.element_ty)
        tl.store(s_ptr + r * n_cols + c, s_io, mask=mask)
        s = s_io.to(tl.float32)  # normalise the stored (rounded) sum, as the reference does
    if IS_RMS:
        centered = s
    else:
        mean = tl.reduce(s, 1, add_combine) / n_cols
        tl.store(mean_ptr + rows, mean, mask=row_ok)
        centered = tl.where(mask, s - mean[:, None], 0.0)
    rstd = 1.0 / tl.sqrt(tl.reduce(centered * centered, 1, add_combine) / n_cols + eps)
    tl.store(rstd_ptr + rows, rstd, mask=row_ok)
    y = centered * rstd[:, None]
    if HAS_WEIGHT:
        y = y * tl.load(w_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)[None, :]
    if HAS_BIAS:
        y = y + tl.load(b_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)[None, :]
    tl.store(y_ptr + r * n_cols + c, y.to(y_ptr.dtype.element_ty), mask=mask)


@lazy_jit
def _norm_bwd_kernel(
    dy_ptr, ds_ptr, s_ptr, w_ptr, mean_ptr, rstd_ptr, dx_ptr, dw_part_ptr, db_part_ptr,
    n_rows, n_cols, rows_per_prog, stride_dy, stride_ds, stride_s,
    IS_RMS: tl.constexpr, HAS_DS: tl.constexpr, HAS_WEIGHT: tl.constexpr,
    NEED_DW: tl.constexpr, NEED_DB: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    pid = tl.program_id(0)
    cols = tl.arange(0, BLOCK_N)
    col_ok = cols < n_cols
    c = cols[None, :]
    if HAS_WEIGHT:
        w = tl.load(w_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)[None, :]
    dw_acc = tl.full([BLOCK_M, BLOCK_N], 0.0, tl.float32)
    db_acc = tl.full([BLOCK_M, BLOCK_N], 0.0, tl.float32)
    for start in range(pid * rows_per_prog, (pid + 1) * rows_per_prog, BLOCK_M):
        rows, row_ok, mask, r = row_tile(start, n_rows, col_ok, BLOCK_M)
        s = tl.load(s_ptr + r * stride_s + c, mask=mask, other=0.0).to(tl.float32)
        dy = tl.load(dy_ptr + r * stride_dy + c, mask=mask, other=0.0).to(tl.float32)
        rstd = tl.load(rstd_ptr + rows, mask=row_ok, other=0.0)[:, None]
        if IS_RMS:
            x_hat = s * rstd
        else:
            mean = tl.load(mean_ptr + rows, mask=row_ok, other=0.0)[:, None]
            x_hat = tl.where(mask, (s - mean) * rstd, 0.0)
        if HAS_WEIGHT:
            wdy = dy * w
        else:
            wdy = dy
        # d x_hat: project out the directions the normalisation removed (mean and scale)
        c1 = tl.reduce(x_hat * wdy, 1, add_combine)[:, None] / n_cols
        if IS_RMS:
            dx = (wdy - x_hat * c1) * rstd
        else:
            c2 = tl.reduce(wdy, 1, add_combine)[:, None] / n_cols
            dx = (wdy - (x_hat * c1 + c2)) * rstd
        if HAS_DS:  # gradient that reached the carried sum s directly
            dx += tl.load(ds_ptr + r * stride_ds + c, mask=mask, other=0.0).to(tl.float32)
        tl.store(dx_ptr + r * n_cols + c, dx.to(dx_ptr.dtype.element_ty), mask=mask)
        if NEED_DW:
            dw_acc += dy * x_hat
        if NEED_DB:
            db_acc += dy
    if NEED_DW:
        tl.store(dw_part_ptr + pid * n_cols + cols, tl.reduce(dw_acc, 0, add_combine), mask=col_ok)
    if NEED_DB:
        tl.store(db_part_ptr + pid * n_cols + cols, tl.reduce(db_acc, 0, add_combine), mask=col_ok)


def _rows_per_tile(block_n: int) -> int:
    return max(1, min(16, 4096 // block_n))


def _norm_forward(x, residual, weight, bias, eps: float, is_rms: bool):
    D = x.shape[-1]
    x2 = as_rows(x, D)
    M = x2.shape[0]
    res2 = as_rows(residual, D) if residual is not None else None
    y = torch.empty(x.shape, device=x.device, dtype=x.dtype)
    s = torch.empty(x.shape if residual is not None else (0,), device=x.device, dtype=x.dtype)
    # RMSNorm has no mean: zeros, so the op's output is defined (the kernel writes it only for LayerNorm)
    mean = (torch.zeros if is_rms else torch.empty)(M, device=x.device, dtype=torch.float32)
    rstd = torch.empty(M, device=x.device, dtype=torch.float32)
    BLOCK_N = next_power_of_2(D)
    BLOCK_M = _rows_per_tile(BLOCK_N)
    if M:
        _norm_fwd_kernel[(cdiv(M, BLOCK_M),)](
            x2, res2 if res2 is not None else x2, weight if weight is not None else x2,
            bias if bias is not None else x2, y, s if residual is not None else y, mean, rstd,
            M, D, x2.stride(0), res2.stride(0) if res2 is not None else 0, eps,
            IS_RMS=is_rms, HAS_RESIDUAL=residual is not None, HAS_WEIGHT=weight is not None,
            HAS_BIAS=bias is not None, BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N,
            num_warps=num_warps(BLOCK_M * BLOCK_N),
        )
    return y, s, mean, rstd


def _norm_backward(dy, ds, s, weight, bias, mean, rstd, is_rms: bool, need_dw: bool, need_db: bool):
    D = s.shape[-1]
    s2 = as_rows(s, D)
    M = s2.shape[0]
    if dy is None:  # only the carried sum was used downstream
        dy = torch.zeros(s.shape, device=s.device, dtype=s.dtype)
    dy2 = as_rows(dy, D)
    ds2 = as_rows(ds, D) if ds is not None else None
    dx = torch.empty(s.shape, device=s.device, dtype=s.dtype)
    BLOCK_N = next_power_of_2(D)
    BLOCK_M = max(1, 1024 // BLOCK_N)  # two [BLOCK_M, D] accumulators stay live: fewer rows than forward
    progs, rows_per_prog = split_programs(M, BLOCK_M, program_budget(s.device))
    dw_part = torch.empty((progs, D), device=s.device, dtype=torch.float32) if need_dw else dx
    db_part = torch.empty((progs, D), device=s.device, dtype=torch.float32) if need_db else dx
    if M:
        _norm_bwd_kernel[(progs,)](
            dy2, ds2 if ds2 is not None else dy2, s2, weight if weight is not None else s2, mean, rstd,
            dx, dw_part, db_part, M, D, rows_per_prog, dy2.stride(0),
            ds2.stride(0) if ds2 is not None else 0, s2.stride(0),
            IS_RMS=is_rms, HAS_DS=ds2 is not None, HAS_WEIGHT=weight is not None,
            NEED_DW=need_dw, NEED_DB=need_db, BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N,
            num_warps=num_warps(2 * BLOCK_M * BLOCK_N),
        )
    dw, db = dx.new_empty(0), dx.new_empty(0)
    if need_dw:
        dw = (dw_part.sum(0) if M else torch.zeros(D, device=s.device)).to(weight.dtype)
    if need_db:
        db = (db_part.sum(0) if M else torch.zeros(D, device=s.device)).to(bias.dtype)
    return dx, dw, db


# The Triton path as torch.library custom ops (forward and backward), so torch.compile sees each
# launch as one graph node. The forward returns ``(y, s, mean, rstd)``: ``s = x + residual`` (empty
# without a residual) and the float32 row statistics the backward reuses.
@torch.library.custom_op("vitlab::add_norm", mutates_args=())
def add_norm_op(x: torch.Tensor, residual: Optional[torch.Tensor], weight: Optional[torch.Tensor],
                bias: Optional[torch.Tensor], eps: float, is_rms: bool
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    return _norm_forward(x, residual, weight, bias, eps, is_rms)


@add_norm_op.register_fake
def _(x, residual, weight, bias, eps, is_rms):
    M = x.numel() // x.shape[-1]
    return (x.new_empty(x.shape), x.new_empty(x.shape if residual is not None else (0,)),
            x.new_empty(M, dtype=torch.float32), x.new_empty(M, dtype=torch.float32))


@torch.library.custom_op("vitlab::add_norm_backward", mutates_args=())
def _add_norm_backward(dy: Optional[torch.Tensor], ds: Optional[torch.Tensor], s: torch.Tensor,
                       weight: Optional[torch.Tensor], bias: Optional[torch.Tensor], mean: torch.Tensor,
                       rstd: torch.Tensor, is_rms: bool, need_dw: bool, need_db: bool
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return _norm_backward(dy, ds, s, weight, bias, mean, rstd, is_rms, need_dw, need_db)


@_add_norm_backward.register_fake
def _(dy, ds, s, weight, bias, mean, rstd, is_rms, need_dw, need_db):
    return (s.new_empty(s.shape), s.new_empty(weight.shape if need_dw else (0,)),
            s.new_empty(bias.shape if need_db else (0,)))


def _norm_setup_context(ctx, inputs, output):
    x, residual, weight, bias, eps, is_rms = inputs
    y, s, mean, rstd = output
    ctx.save_for_backward(s if residual is not None else x, weight, bias, mean, rstd)
    ctx.is_rms, ctx.has_residual = is_rms, residual is not None
    ctx.mark_non_differentiable(mean, rstd)
    ctx.set_materialize_grads(False)


def _norm_autograd(ctx, dy, ds, _dmean, _drstd):
    s, weight, bias, mean, rstd = ctx.saved_tensors
    need_dw = weight is not None and ctx.needs_input_grad[2]
    need_db = bias is not None and ctx.needs_input_grad[3]
    dx, dw, db = _add_norm_backward(dy, ds if ctx.has_residual else None, s, weight, bias, mean, rstd,
                                    ctx.is_rms, need_dw, need_db)
    # d(x + residual) / dx = d/dresidual = identity: both inputs get the same gradient
    return dx, (dx if ctx.has_residual else None), dw if need_dw else None, db if need_db else None, None, None


add_norm_op.register_autograd(_norm_autograd, setup_context=_norm_setup_context)


def _add_norm(x, residual, weight, bias, eps: float, is_rms: bool):
    y, s, _, _ = add_norm_op(x, residual, weight, bias, eps, is_rms)
    return (y, s) if residual is not None else y


def _check(name, x, weight, bias, residual):
    D = x.shape[-1] if x.ndim else 0
    if x.ndim < 1 or D == 0:
        raise ValueError(f"{name} needs x of shape [..., D] with D > 0, got {tuple(x.shape)}")
    for label, p in (("weight", weight), ("bias", bias)):
        if p is not None and p.shape != (D,):
            raise ValueError(f"{name}: {label} must have shape [D]=[{D}], got {tuple(p.shape)}")
    if residual is not None:
        if residual.shape != x.shape:
            raise ValueError(f"{name}: residual shape {tuple(residual.shape)} != x shape {tuple(x.shape)}")
        if residual.dtype != x.dtype:
            raise TypeError(f"{name}: residual dtype {residual.dtype} differs from x {x.dtype}")


def _triton_width_ok(name, D):
    if D > MAX_WIDTH:
        raise ValueError(f"{name}: the Triton kernel holds a row in registers and supports D <= {MAX_WIDTH}, "
                         f"got D={D}; use backend='torch'")


def layer_norm(
    x: torch.Tensor,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    eps: float,
    residual: torch.Tensor | None = None,
    backend: str = "auto",
):
    """LayerNorm over the last dim, optionally of ``x + residual``.

    Args:
        x: [..., D]; rows may be strided (unit stride along D is used in place).
        weight: [D] or None (no affine scale).
        bias: [D] or None.
        eps: added to the variance.
        residual: [..., D] like ``x``, or None.
        backend: ``"auto" | "triton" | "torch"`` (see :mod:`vitlab.kernels.dispatch`).

    Returns:
        ``y`` [..., D] without a residual; ``(y, s)`` with one, where ``s = x + residual`` is the
        next residual stream. Statistics are float32; outputs are in ``x.dtype``. Gradients flow
        to ``x``, ``residual``, ``weight`` and ``bias``.
    """
    _check("layer_norm", x, weight, bias, residual)
    if resolve_backend(backend, x, residual, weight, bias) == "torch":
        return layer_norm_reference(x, weight, bias, eps, residual)
    _triton_width_ok("layer_norm", x.shape[-1])
    return _add_norm(x, residual, weight, bias, float(eps), False)


def rms_norm(
    x: torch.Tensor,
    weight: torch.Tensor | None,
    eps: float,
    residual: torch.Tensor | None = None,
    backend: str = "auto",
):
    """RMSNorm over the last dim, optionally of ``x + residual``.

    Args:
        x: [..., D]; rows may be strided.
        weight: [D] or None.
        eps: added to the mean square.
        residual: [..., D] like ``x``, or None.
        backend: ``"auto" | "triton" | "torch"`` (see :mod:`vitlab.kernels.dispatch`).

    Returns:
        ``y`` [..., D], or ``(y, s)`` with a residual (``s = x + residual``). Gradients flow to
        ``x``, ``residual`` and ``weight``.
    """
    _check("rms_norm", x, weight, None, residual)
    if resolve_backend(backend, x, residual, weight) == "torch":
        return rms_norm_reference(x, weight, eps, residual)
    _triton_width_ok("rms_norm", x.shape[-1])
    return _add_norm(x, residual, weight, None, float(eps), True)
