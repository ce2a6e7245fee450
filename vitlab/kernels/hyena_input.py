"""Hyena's first gating written straight into the long convolution's FFT input (Poli et al. 2023,
"Hyena Hierarchy"): ``v0 = v * gate``, and ``v0`` zero-padded to ``2R x 2W`` in float32.

The 2D long convolution (:class:`vitlab.mixers.Hyena2D`) is an FFT convolution over the
zero-padded ``2R x 2W`` grid, in float32 for half activations. In eager torch that takes three
passes after the product: ``v * gate`` writes ``v0``, ``.float()`` copies it (half dtypes only),
and ``rfft2(..., s=(2R, 2W))`` copies it again into a zero-padded buffer. The kernel reads ``v``
and ``gate`` once (channel slices of the short convolution's output, in place) and writes both
``v0`` (the gate kernel's and autograd's input, in ``v``'s dtype) and the padded float32 buffer,
zeros included, which ``rfft2`` then transforms without padding.

The torch reference returns ``v0`` itself as the FFT input (``rfft2``'s ``s=`` pads it, as the
mixer always did), so the reference path computes what it computed before, bit for bit.

Axis legend: B batch, C channels, R x W the token grid, M = B*C*R rows of W elements each
(M2 = B*C*2R rows of 2W in the padded buffer).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import torch

from vitlab.kernels._triton import as_bchw, bchw_strides, cdiv, lazy_jit, num_warps, tile_2d
from vitlab.kernels.dispatch import resolve_backend

if TYPE_CHECKING:  # bound to the real module at the first launch, see vitlab.kernels._triton
    import triton.language as tl  # noqa: TC004 - kernels see it only when jitted

__all__ = ["hyena_input_gate", "hyena_input_gate_op", "hyena_input_gate_reference"]


def hyena_input_gate_reference(v: torch.Tensor, gate: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain torch ``v0 = v * gate``, returned twice: as the gated value and as the FFT input
    (unpadded; ``rfft2(..., s=(2R, 2W))`` pads it and the FFT casts half dtypes to float32)."""
    v0 = v * gate
    return v0, v0


@lazy_jit
def _input_gate_fwd_kernel(
    v_ptr, gate_ptr, v0_ptr, padded_ptr, n_rows, n_channels, height, width,
    v_sb, v_sc, v_sh, gate_sb, gate_sc, gate_sh,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    # one program covers BLOCK_M rows x BLOCK_N columns of the padded [B, C, 2R, 2W] buffer
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    row_ok = rows < n_rows
    pad_mask = row_ok[:, None] & (cols < 2 * width)[None, :]
    bc = rows // (2 * height)  # padded row = (b * C + c) * 2R + h
    h = (rows % (2 * height)).to(tl.int64)
    b, c = (bc // n_channels).to(tl.int64), (bc % n_channels).to(tl.int64)
    inside = pad_mask & (h < height)[:, None] & (cols < width)[None, :]
    w = cols[None, :]
    v = tl.load(v_ptr + (b * v_sb + c * v_sc + h * v_sh)[:, None] + w, mask=inside, other=0.0)
    gate = tl.load(gate_ptr + (b * gate_sb + c * gate_sc + h * gate_sh)[:, None] + w, mask=inside, other=0.0)
    v0 = (v.to(tl.float32) * gate.to(tl.float32)).to(v0_ptr.dtype.element_ty)  # rounded like torch's v * gate
    tl.store(v0_ptr + (bc.to(tl.int64) * height + h)[:, None] * width + w, v0, mask=inside)
    tl.store(padded_ptr + rows.to(tl.int64)[:, None] * (2 * width) + w, v0.to(tl.float32), mask=pad_mask)


@lazy_jit
def _input_gate_bwd_kernel(
    g0_ptr, gp_ptr, v_ptr, gate_ptr, dv_ptr, dgate_ptr, n_rows, n_cols, n_channels, height,
    g0_sb, g0_sc, g0_sh, gp_sb, gp_sc, gp_sh, v_sb, v_sc, v_sh, gate_sb, gate_sc, gate_sh,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, HAS_G0: tl.constexpr, HAS_GP: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    mask = (rows < n_rows)[:, None] & (cols < n_cols)[None, :]
    bc = rows // height  # row = (b * C + c) * R + h
    h = (rows % height).to(tl.int64)
    b, c = (bc // n_channels).to(tl.int64), (bc % n_channels).to(tl.int64)
    w = cols[None, :]
    # dL/dv0: from v0's own uses plus the FFT input's top-left corner (its padding is constant)
    if HAS_G0:
        grad = tl.load(g0_ptr + (b * g0_sb + c * g0_sc + h * g0_sh)[:, None] + w, mask=mask, other=0.0)
        grad = grad.to(tl.float32)
        if HAS_GP:
            grad += tl.load(gp_ptr + (b * gp_sb + c * gp_sc + h * gp_sh)[:, None] + w, mask=mask, other=0.0)
    else:
        grad = tl.load(gp_ptr + (b * gp_sb + c * gp_sc + h * gp_sh)[:, None] + w, mask=mask, other=0.0)
    v = tl.load(v_ptr + (b * v_sb + c * v_sc + h * v_sh)[:, None] + w, mask=mask, other=0.0).to(tl.float32)
    gate = tl.load(gate_ptr + (b * gate_sb + c * gate_sc + h * gate_sh)[:, None] + w, mask=mask, other=0.0)
    dense = rows.to(tl.int64)[:, None] * n_cols + w
    tl.store(dv_ptr + dense, (grad * gate.to(tl.float32)).to(dv_ptr.dtype.element_ty), mask=mask)
    tl.store(dgate_ptr + dense, (grad * v).to(dgate_ptr.dtype.element_ty), mask=mask)


def _input_gate_forward(v, gate):
    v4, g4 = as_bchw(v), as_bchw(gate)
    B, C, R, W = v.shape
    v0 = torch.empty(v.shape, device=v.device, dtype=v.dtype)
    padded = torch.empty((B, C, 2 * R, 2 * W), device=v.device, dtype=torch.float32)
    BLOCK_M, BLOCK_N = tile_2d(2 * W, elements=2048)
    M2 = B * C * 2 * R
    if v0.numel():
        grid = (cdiv(M2, BLOCK_M), cdiv(2 * W, BLOCK_N))
        _input_gate_fwd_kernel[grid](
            v4, g4, v0, padded, M2, C, R, W, *bchw_strides(v4), *bchw_strides(g4),
            BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, num_warps=num_warps(2 * BLOCK_M * BLOCK_N),
        )
    return v0, padded


def _input_gate_backward(grad_v0, grad_padded, v, gate):
    R, W = v.shape[-2:]
    has_g0, has_gp = grad_v0 is not None, grad_padded is not None
    g0 = as_bchw(grad_v0) if has_g0 else None
    gp = as_bchw(grad_padded[..., :R, :W]) if has_gp else None  # the padding is constant: no gradient
    g0, gp = (g0 if has_g0 else gp), (gp if has_gp else g0)  # an absent one is never read: any stand-in
    v4, g4 = as_bchw(v), as_bchw(gate)
    B, C = v.shape[:2]
    dv = torch.empty(v.shape, device=v.device, dtype=v.dtype)
    dgate = torch.empty(v.shape, device=gate.device, dtype=gate.dtype)
    BLOCK_M, BLOCK_N = tile_2d(W, elements=2048)
    M = B * C * R
    if dv.numel():
        _input_gate_bwd_kernel[(cdiv(M, BLOCK_M), cdiv(W, BLOCK_N))](
            g0, gp, v4, g4, dv, dgate, M, W, C, R, *bchw_strides(g0), *bchw_strides(gp), *bchw_strides(v4), *bchw_strides(g4),
            BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, HAS_G0=has_g0, HAS_GP=has_gp,
            num_warps=num_warps(3 * BLOCK_M * BLOCK_N),
        )
    return dv, dgate


# The Triton path as torch.library custom ops (forward and backward), so torch.compile sees each
# launch as one graph node; the backward saves ``v`` and ``gate`` (views autograd keeps anyway).
@torch.library.custom_op("vitlab::hyena_input_gate", mutates_args=())
def hyena_input_gate_op(v: torch.Tensor, gate: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return _input_gate_forward(v, gate)


@hyena_input_gate_op.register_fake
def _(v, gate):
    B, C, R, W = v.shape
    return v.new_empty(v.shape), v.new_empty((B, C, 2 * R, 2 * W), dtype=torch.float32)


@torch.library.custom_op("vitlab::hyena_input_gate_backward", mutates_args=())
def _input_gate_backward_op(grad_v0: Optional[torch.Tensor], grad_padded: Optional[torch.Tensor],
                            v: torch.Tensor, gate: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return _input_gate_backward(grad_v0, grad_padded, v, gate)


@_input_gate_backward_op.register_fake
def _(grad_v0, grad_padded, v, gate):
    return v.new_empty(v.shape), gate.new_empty(v.shape)


def _setup_context(ctx, inputs, output):
    ctx.save_for_backward(*inputs)
    ctx.set_materialize_grads(False)


def _autograd(ctx, grad_v0, grad_padded):
    if grad_v0 is None and grad_padded is None:
        return None, None
    return _input_gate_backward_op(grad_v0, grad_padded, *ctx.saved_tensors)


hyena_input_gate_op.register_autograd(_autograd, setup_context=_setup_context)


def hyena_input_gate(
    v: torch.Tensor, gate: torch.Tensor, backend: str = "auto"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Hyena's first gating ``v0 = v * gate`` and the long convolution's FFT input, in one pass.

    Args:
        v: value branch [B, C, R, W]; may be a strided view (a channel slice).
        gate: gate branch [B, C, R, W] in ``v``'s dtype; may be a strided view.
        backend: ``"auto" | "triton" | "torch"`` (see :mod:`vitlab.kernels.dispatch`).

    Returns:
        ``(v0, fft_input)``: ``v0`` [B, C, R, W] in ``v.dtype``, and what ``rfft2(fft_input,
        s=(2R, 2W))`` transforms into the FFT of zero-padded ``v0``: ``v0`` zero-padded to
        [B, C, 2R, 2W] in float32 (Triton), or ``v0`` itself (torch). Gradients flow through both.
    """
    if v.ndim != 4 or v.shape != gate.shape:
        raise ValueError(f"hyena_input_gate needs v and gate of one shape [B, C, R, W], got {tuple(v.shape)} "
                         f"and {tuple(gate.shape)}")
    if v.dtype != gate.dtype:
        raise TypeError(f"hyena_input_gate needs v and gate of one dtype, got {v.dtype} and {gate.dtype}")
    if resolve_backend(backend, v, gate) == "torch":
        return hyena_input_gate_reference(v, gate)
    return hyena_input_gate_op(v, gate)
