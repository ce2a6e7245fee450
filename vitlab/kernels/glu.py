"""Fused SwiGLU gate (Shazeer 2020, "GLU Variants Improve Transformer"): ``silu(a) * b``.

Eager torch writes ``silu(a)`` to memory and reads it back for the product, and autograd keeps
it for the backward; the kernel reads ``a`` and ``b`` once and recomputes the sigmoid in the
backward. ``a`` and ``b`` are usually the two halves of one ``w12`` projection
(``chunk(2, -1)``), whose rows are strided: the kernel reads them in place. The gated FFN
(:class:`vitlab.layers.SwiGLU`) calls it only when its activation is SiLU; GeGLU and the other
gates run in torch.

Axis legend: M rows (all leading dims flattened), H hidden width.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from vitlab.kernels._triton import as_rows, cdiv, lazy_jit, num_warps, tile_2d
from vitlab.kernels.dispatch import resolve_backend

if TYPE_CHECKING:  # bound to the real module at the first launch, see vitlab.kernels._triton
    import triton.language as tl  # noqa: TC004 - kernels see it only when jitted

__all__ = ["swiglu", "swiglu_op", "swiglu_reference"]


def swiglu_reference(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Plain torch ``silu(a) * b``, computed in float32 and cast back to ``a.dtype``."""
    return (F.silu(a.float()) * b.float()).to(a.dtype)


@lazy_jit
def _swiglu_fwd_kernel(
    a_ptr, b_ptr, out_ptr, n_rows, n_cols, stride_a, stride_b,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    mask = (rows < n_rows)[:, None] & (cols < n_cols)[None, :]
    rows = rows.to(tl.int64)[:, None]  # int64: M * H overflows int32 at large batch
    cols = cols[None, :]
    a = tl.load(a_ptr + rows * stride_a + cols, mask=mask, other=0.0).to(tl.float32)
    b = tl.load(b_ptr + rows * stride_b + cols, mask=mask, other=0.0).to(tl.float32)
    out = a / (1.0 + tl.exp(-a)) * b  # silu; not tl.sigmoid, see vitlab.kernels._triton
    tl.store(out_ptr + rows * n_cols + cols, out.to(out_ptr.dtype.element_ty), mask=mask)


@lazy_jit
def _swiglu_bwd_kernel(
    g_ptr, a_ptr, b_ptr, da_ptr, db_ptr, n_rows, n_cols, stride_g, stride_a, stride_b,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    mask = (rows < n_rows)[:, None] & (cols < n_cols)[None, :]
    rows = rows.to(tl.int64)[:, None]
    cols = cols[None, :]
    g = tl.load(g_ptr + rows * stride_g + cols, mask=mask, other=0.0).to(tl.float32)
    a = tl.load(a_ptr + rows * stride_a + cols, mask=mask, other=0.0).to(tl.float32)
    b = tl.load(b_ptr + rows * stride_b + cols, mask=mask, other=0.0).to(tl.float32)
    sig = 1.0 / (1.0 + tl.exp(-a))
    # d silu(a) / da = sig * (1 + a * (1 - sig))
    da = g * b * sig * (1.0 + a * (1.0 - sig))
    db = g * a * sig
    tl.store(da_ptr + rows * n_cols + cols, da.to(da_ptr.dtype.element_ty), mask=mask)
    tl.store(db_ptr + rows * n_cols + cols, db.to(db_ptr.dtype.element_ty), mask=mask)


def _swiglu_forward(a, b):
    H = a.shape[-1]
    a2, b2 = as_rows(a, H), as_rows(b, H)
    out = torch.empty(a.shape, device=a.device, dtype=a.dtype)
    M = a2.shape[0]
    BLOCK_M, BLOCK_N = tile_2d(H)
    grid = (cdiv(M, BLOCK_M), cdiv(H, BLOCK_N))
    if out.numel():
        _swiglu_fwd_kernel[grid](a2, b2, out, M, H, a2.stride(0), b2.stride(0),
                                 BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, num_warps=num_warps(BLOCK_M * BLOCK_N))
    return out


# The Triton path as torch.library custom ops (forward and backward), so torch.compile sees each
# launch as one graph node; the backward saves ``a`` and ``b`` and recomputes the sigmoid.
@torch.library.custom_op("vitlab::swiglu", mutates_args=())
def swiglu_op(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return _swiglu_forward(a, b)


@swiglu_op.register_fake
def _(a, b):
    return a.new_empty(a.shape)


@torch.library.custom_op("vitlab::swiglu_backward", mutates_args=())
def _swiglu_backward(grad_out: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    H = a.shape[-1]
    a2, b2, g2 = as_rows(a, H), as_rows(b, H), as_rows(grad_out, H)
    M = a2.shape[0]
    da = torch.empty(a.shape, device=a.device, dtype=a.dtype)
    db = torch.empty(b.shape, device=b.device, dtype=b.dtype)
    BLOCK_M, BLOCK_N = tile_2d(H)
    grid = (cdiv(M, BLOCK_M), cdiv(H, BLOCK_N))
    if da.numel():
        _swiglu_bwd_kernel[grid](g2, a2, b2, da, db, M, H, g2.stride(0), a2.stride(0), b2.stride(0),
                                 BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, num_warps=num_warps(BLOCK_M * BLOCK_N))
    return da, db


@_swiglu_backward.register_fake
def _(grad_out, a, b):
    return a.new_empty(a.shape), b.new_empty(b.shape)


def _swiglu_setup_context(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _swiglu_autograd(ctx, grad_out):
    return _swiglu_backward(grad_out, *ctx.saved_tensors)


swiglu_op.register_autograd(_swiglu_autograd, setup_context=_swiglu_setup_context)


def swiglu(a: torch.Tensor, b: torch.Tensor, backend: str = "auto") -> torch.Tensor:
    """``silu(a) * b`` in one pass.

    Args:
        a: gate pre-activation [..., H].
        b: value [..., H], same shape and dtype as ``a``; either may be a strided view.
        backend: ``"auto" | "triton" | "torch"`` (see :mod:`vitlab.kernels.dispatch`).

    Returns:
        [..., H] in ``a.dtype``.
    """
    if a.shape != b.shape:
        raise ValueError(f"swiglu needs a and b of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.dtype != b.dtype:
        raise TypeError(f"swiglu needs a and b of one dtype, got {a.dtype} and {b.dtype}")
    if resolve_backend(backend, a, b) == "torch":
        return swiglu_reference(a, b)
    return swiglu_op(a, b)
