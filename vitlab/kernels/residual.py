"""Fused residual update ``x + drop_path(gamma * y)``: LayerScale (Touvron et al. 2021, CaiT)
and stochastic depth (Huang et al. 2016) applied to a residual branch in one pass.

Eager torch spends three passes and two temporaries on this line of every block (``gamma*y``,
the masked copy, the sum); the kernel reads ``x`` and ``y`` once and writes the sum once.

The per-sample keep mask is drawn with torch on the host, before dispatch, so both backends see
the same mask for the same generator state: a kept sample gets ``x + (gamma*y) * (1/(1-p))``
and a dropped one is exactly ``x``.

Axis legend: B samples, D channels (last dim), M rows = all leading dims flattened, R = M / B.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import torch

from vitlab.kernels._triton import (
    add_combine, as_rows, cdiv, lazy_jit, num_warps, program_budget, row_tile, split_programs, tile_2d,
)
from vitlab.kernels.dispatch import resolve_backend

if TYPE_CHECKING:  # bound to the real module at the first launch, see vitlab.kernels._triton
    import triton.language as tl  # noqa: TC004 - kernels see it only when jitted

__all__ = [
    "drop_path_scale", "residual_scale_drop", "residual_scale_drop_op", "residual_scale_drop_reference",
]


def drop_path_scale(
    batch: int,
    drop_prob: float,
    training: bool,
    device: torch.device,
    generator: torch.Generator | None = None,
) -> torch.Tensor | None:
    """Per-sample multiplier of the branch: 0 (dropped) or ``1/(1-p)`` (kept); None when nothing drops.

    Args:
        batch: number of samples B.
        drop_prob: probability p of dropping a sample's branch, in [0, 1).
        training: drop only in training.
        device: where the mask lives (the generator, if given, must be on it).
        generator: source of randomness; the same state gives the same mask on either backend.

    Returns:
        float32 [B], or None in eval mode or when ``drop_prob == 0``.
    """
    if not 0.0 <= drop_prob < 1.0:
        raise ValueError(f"drop_prob must be in [0, 1), got {drop_prob}")
    if not training or drop_prob == 0.0:
        return None
    keep = 1.0 - drop_prob
    mask = torch.empty(batch, device=device, dtype=torch.float32).bernoulli_(keep, generator=generator)
    return mask.div_(keep)


def residual_scale_drop_reference(
    x: torch.Tensor, y: torch.Tensor, gamma: torch.Tensor | None, scale: torch.Tensor | None
) -> torch.Tensor:
    """Plain torch ``x + (gamma * y) * scale[b]`` in float32, cast back to ``x.dtype``.

    Args:
        x: residual stream [B, ..., D].
        y: branch output [B, ..., D].
        gamma: LayerScale [D] or None.
        scale: per-sample multiplier [B] from :func:`drop_path_scale`, or None.
    """
    branch = y.float() if gamma is None else gamma.float() * y.float()
    if scale is None:
        return (x.float() + branch).to(x.dtype)
    s = scale.view((-1,) + (1,) * (x.ndim - 1))
    # where(), not x + 0 * branch: a dropped sample must come out exactly x even if y is inf/nan
    return torch.where(s != 0, x.float() + branch * s, x.float()).to(x.dtype)


@lazy_jit
def _rsd_fwd_kernel(
    x_ptr, y_ptr, gamma_ptr, scale_ptr, out_ptr, n_rows, n_cols, rows_per_sample, stride_x, stride_y,
    HAS_GAMMA: tl.constexpr, HAS_SCALE: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    col_ok = cols < n_cols
    rows, row_ok, mask, r = row_tile(tl.program_id(0) * BLOCK_M, n_rows, col_ok, BLOCK_M)
    c = cols[None, :]
    x = tl.load(x_ptr + r * stride_x + c, mask=mask, other=0.0).to(tl.float32)
    branch = tl.load(y_ptr + r * stride_y + c, mask=mask, other=0.0).to(tl.float32)
    if HAS_GAMMA:
        branch = tl.load(gamma_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)[None, :] * branch
    if HAS_SCALE:
        s = tl.load(scale_ptr + rows // rows_per_sample, mask=row_ok, other=0.0)[:, None]
        out = tl.where(s != 0.0, x + branch * s, x)
    else:
        out = x + branch
    tl.store(out_ptr + r * n_cols + c, out.to(out_ptr.dtype.element_ty), mask=mask)


@lazy_jit
def _rsd_bwd_kernel(
    g_ptr, y_ptr, gamma_ptr, scale_ptr, dy_ptr, dgamma_part_ptr, n_rows, n_cols, rows_per_sample,
    rows_per_prog, stride_g, stride_y,
    HAS_GAMMA: tl.constexpr, HAS_SCALE: tl.constexpr, NEED_DGAMMA: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    pid_m = tl.program_id(0)
    cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    col_ok = cols < n_cols
    c = cols[None, :]
    if HAS_GAMMA:
        gamma = tl.load(gamma_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)[None, :]
    acc = tl.full([BLOCK_M, BLOCK_N], 0.0, tl.float32)
    # Each program owns a chunk of rows and loops over it, so the dgamma partials are
    # [programs, D] rather than [M / BLOCK_M, D].
    for start in range(pid_m * rows_per_prog, (pid_m + 1) * rows_per_prog, BLOCK_M):
        rows, row_ok, mask, r = row_tile(start, n_rows, col_ok, BLOCK_M)
        g = tl.load(g_ptr + r * stride_g + c, mask=mask, other=0.0).to(tl.float32)
        if HAS_SCALE:
            g = g * tl.load(scale_ptr + rows // rows_per_sample, mask=row_ok, other=0.0)[:, None]
        if HAS_GAMMA:
            dy = g * gamma
        else:
            dy = g
        tl.store(dy_ptr + r * n_cols + c, dy.to(dy_ptr.dtype.element_ty), mask=mask)
        if NEED_DGAMMA:
            acc += g * tl.load(y_ptr + r * stride_y + c, mask=mask, other=0.0).to(tl.float32)
    if NEED_DGAMMA:
        tl.store(dgamma_part_ptr + pid_m * n_cols + cols, tl.reduce(acc, 0, add_combine), mask=col_ok)


def _rsd_forward(x, y, gamma, scale):
    D = x.shape[-1]
    x2, y2 = as_rows(x, D), as_rows(y, D)
    M = x2.shape[0]
    out = torch.empty(x.shape, device=x.device, dtype=x.dtype)
    rows_per_sample = max(1, M // max(1, x.shape[0]))
    BLOCK_M, BLOCK_N = tile_2d(D)
    if out.numel():
        grid = (cdiv(M, BLOCK_M), cdiv(D, BLOCK_N))
        _rsd_fwd_kernel[grid](
            x2, y2, gamma if gamma is not None else x2, scale if scale is not None else x2, out,
            M, D, rows_per_sample, x2.stride(0), y2.stride(0),
            HAS_GAMMA=gamma is not None, HAS_SCALE=scale is not None, BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N,
            num_warps=num_warps(BLOCK_M * BLOCK_N),
            # no fused multiply-add: round gamma*y, *scale and +x separately, exactly like eager torch
            enable_fp_fusion=False,
        )
    return out


def _rsd_backward(grad_out, y, gamma, scale, need_dgamma: bool):
    D = grad_out.shape[-1]
    g2 = as_rows(grad_out, D)
    M = g2.shape[0]
    y2 = as_rows(y, D) if y is not None else None
    rows_per_sample = max(1, M // max(1, grad_out.shape[0]))
    dy = torch.empty(grad_out.shape, device=grad_out.device, dtype=grad_out.dtype)
    BLOCK_M, BLOCK_N = tile_2d(D, elements=2048)
    col_blocks = cdiv(D, BLOCK_N)
    row_progs, rows_per_prog = split_programs(M, BLOCK_M, program_budget(grad_out.device) // col_blocks)
    part = torch.empty((row_progs, D), device=grad_out.device, dtype=torch.float32) if need_dgamma else dy
    if dy.numel():
        _rsd_bwd_kernel[(row_progs, col_blocks)](
            g2, y2 if y2 is not None else g2, gamma if gamma is not None else g2,
            scale if scale is not None else g2, dy, part, M, D, rows_per_sample, rows_per_prog,
            g2.stride(0), y2.stride(0) if y2 is not None else 0,
            HAS_GAMMA=gamma is not None, HAS_SCALE=scale is not None, NEED_DGAMMA=need_dgamma,
            BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, num_warps=num_warps(2 * BLOCK_M * BLOCK_N),
        )
    if not need_dgamma:
        return dy, dy.new_empty(0)
    return dy, part.sum(0).to(gamma.dtype) if dy.numel() else torch.zeros_like(gamma)


# The Triton path as torch.library custom ops (forward and backward), so torch.compile sees each
# launch as one graph node instead of breaking the graph; ``scale`` is a constant (no gradient).
@torch.library.custom_op("vitlab::residual_scale_drop", mutates_args=())
def residual_scale_drop_op(x: torch.Tensor, y: torch.Tensor, gamma: Optional[torch.Tensor],
                           scale: Optional[torch.Tensor]) -> torch.Tensor:
    return _rsd_forward(x, y, gamma, scale)


@residual_scale_drop_op.register_fake
def _(x, y, gamma, scale):
    return x.new_empty(x.shape)


@torch.library.custom_op("vitlab::residual_scale_drop_backward", mutates_args=())
def _residual_scale_drop_backward(grad_out: torch.Tensor, y: Optional[torch.Tensor], gamma: Optional[torch.Tensor],
                                  scale: Optional[torch.Tensor], need_dgamma: bool) -> tuple[torch.Tensor, torch.Tensor]:
    return _rsd_backward(grad_out, y, gamma, scale, need_dgamma)


@_residual_scale_drop_backward.register_fake
def _(grad_out, y, gamma, scale, need_dgamma):
    return grad_out.new_empty(grad_out.shape), grad_out.new_empty(gamma.shape if need_dgamma else (0,),
                                                                  dtype=gamma.dtype if need_dgamma else None)


def _rsd_setup_context(ctx, inputs, output):
    x, y, gamma, scale = inputs
    ctx.save_for_backward(y if gamma is not None else None, gamma, scale)  # y only for dgamma


def _rsd_autograd(ctx, grad_out):
    y, gamma, scale = ctx.saved_tensors
    need_dgamma = gamma is not None and ctx.needs_input_grad[2]
    dy, dgamma = _residual_scale_drop_backward(grad_out, y, gamma, scale, need_dgamma)
    return grad_out, dy, dgamma if need_dgamma else None, None


residual_scale_drop_op.register_autograd(_rsd_autograd, setup_context=_rsd_setup_context)


def residual_scale_drop(
    x: torch.Tensor,
    y: torch.Tensor,
    gamma: torch.Tensor | None,
    drop_prob: float,
    training: bool,
    generator: torch.Generator | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """``x + drop_path(gamma * y)`` in one pass: the residual update of a pre-norm block.

    Args:
        x: residual stream [B, ..., D].
        y: branch output [B, ..., D], same shape and dtype as ``x`` (under autocast it is cast to ``x``'s).
        gamma: LayerScale weights [D] or None (no scaling).
        drop_prob: stochastic-depth probability p in [0, 1); each sample's branch is kept with
            probability 1-p and then scaled by 1/(1-p).
        training: drop only in training; in eval (or p=0) this is ``x + gamma*y``.
        generator: torch generator for the keep mask (on ``x.device``); the same state gives
            identical results on both backends.
        backend: ``"auto" | "triton" | "torch"`` (see :mod:`vitlab.kernels.dispatch`).

    Returns:
        [B, ..., D] in ``x.dtype``. Gradients flow to ``x``, ``y`` and ``gamma``.
    """
    if x.shape != y.shape:
        raise ValueError(
            f"residual_scale_drop needs x and y of one shape, got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    if x.dtype != y.dtype:
        if not torch.is_autocast_enabled(x.device.type):
            raise TypeError(f"residual_scale_drop needs x and y of one dtype, got {x.dtype} and {y.dtype}")
        y = y.to(x.dtype)  # autocast: a bf16 branch joins the fp32 stream (the stream keeps its precision)
    if x.ndim < 2:
        raise ValueError(f"residual_scale_drop needs x of shape [B, ..., D], got {tuple(x.shape)}")
    if gamma is not None and gamma.shape != (x.shape[-1],):
        raise ValueError(f"gamma must have shape [D]=[{x.shape[-1]}], got {tuple(gamma.shape)}")
    scale = drop_path_scale(x.shape[0], drop_prob, training, x.device, generator)
    if resolve_backend(backend, x, y, gamma) == "torch":
        return residual_scale_drop_reference(x, y, gamma, scale)
    return residual_scale_drop_op(x, y, gamma, scale)
