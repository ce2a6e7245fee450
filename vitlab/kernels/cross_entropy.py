"""Fused cross-entropy between teacher probabilities and the student's tempered softmax, the
DINO/iBOT loss term (Caron et al. 2021, DINO; Zhou et al. 2022, iBOT; DINOv3):

    loss[b] = -sum_k p[b, k] * log_softmax(s[b] / temp)_k

With K = 65536 prototypes, eager torch materialises ``s / temp``, its log-softmax and the
product (three fp32 B x K copies) and keeps two for the backward. The kernel streams K in
blocks with an online logsumexp (Milakov & Gimelshein 2018) and keeps only four numbers per
row and K-chunk; the backward recomputes the softmax blockwise from the saved logsumexp:

    d loss / d s[b, k] = (softmax(s[b] / temp)_k * sum_k p[b, k] - p[b, k]) / temp * g[b]

which is the familiar ``(softmax - p) / temp`` when the teacher rows sum to 1. The gradient
for the teacher, ``(logsumexp - s / temp) * g``, is computed only when asked for (the teacher
is normally detached).

The loss is accumulated as ``psum * log(sum exp(z - m)) + sum p * (m - z)`` with the running
max ``m``: every term is non-negative, so no large ``lse * psum - p.z`` cancellation.

Axis legend: B rows (crops or masked patches), K prototypes, C chunks of K.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from vitlab.kernels._triton import (
    add_combine,
    cdiv,
    lazy_jit,
    max_combine,
    next_power_of_2,
    num_warps,
    program_budget,
    split_programs,
    tile_2d,
)
from vitlab.kernels.dispatch import resolve_backend

if TYPE_CHECKING:  # bound to the real module at the first launch, see vitlab.kernels._triton
    import triton.language as tl  # noqa: TC004 - kernels see it only when jitted

__all__ = ["softmax_cross_entropy", "softmax_cross_entropy_op", "softmax_cross_entropy_reference"]

_BLOCK_B, _BLOCK_K = 2, 1024


def softmax_cross_entropy_reference(
    student_logits: torch.Tensor, teacher_probs: torch.Tensor, student_temp: float
) -> torch.Tensor:
    """Plain torch ``-sum_k p * log_softmax(s / temp)`` per row, in float32: [B]."""
    log_q = F.log_softmax(student_logits.float() * (1.0 / student_temp), dim=-1)  # reciprocal, as the kernel
    return -(teacher_probs.float() * log_q).sum(dim=-1)


@lazy_jit
def _ce_fwd_kernel(
    s_ptr, p_ptr, part_ptr, n_rows, n_cols, stride_s, stride_p, cols_per_prog, inv_temp,
    BLOCK_B: tl.constexpr, BLOCK_K: tl.constexpr,
):
    chunk = tl.program_id(1)
    n_chunks = tl.num_programs(1)
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    row_ok = rows < n_rows
    r = rows.to(tl.int64)[:, None]
    m = tl.full([BLOCK_B], float("-inf"), tl.float32)
    sum_exp = tl.full([BLOCK_B], 0.0, tl.float32)
    p_gap = tl.full([BLOCK_B], 0.0, tl.float32)  # sum_k p * (m - z) at the current max m
    p_sum = tl.full([BLOCK_B], 0.0, tl.float32)
    col_end = tl.minimum((chunk + 1) * cols_per_prog, n_cols)
    for start in range(chunk * cols_per_prog, col_end, BLOCK_K):
        cols = start + tl.arange(0, BLOCK_K)
        col_ok = cols < col_end
        mask = row_ok[:, None] & col_ok[None, :]
        s = tl.load(s_ptr + r * stride_s + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        p = tl.load(p_ptr + r * stride_p + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        z = s * inv_temp  # finite everywhere (masked s = 0), so masked p = 0 adds exactly 0 below
        z_live = tl.where(col_ok[None, :], z, float("-inf"))  # padding columns: exp -> 0
        m_new = tl.maximum(m, tl.reduce(z_live, 1, max_combine))
        shift = tl.where(m > float("-inf"), m_new - m, 0.0)  # first block: no 0 * inf
        sum_exp = sum_exp * tl.exp(m - m_new) + tl.reduce(tl.exp(z_live - m_new[:, None]), 1, add_combine)
        p_gap = p_gap + p_sum * shift + tl.reduce(p * (m_new[:, None] - z), 1, add_combine)
        p_sum = p_sum + tl.reduce(p, 1, add_combine)
        m = m_new
    stride_stat = n_chunks * n_rows  # part is [4, C, B]: max, sum_exp, p_gap, p_sum
    off = chunk * n_rows + rows
    tl.store(part_ptr + off, m, mask=row_ok)
    tl.store(part_ptr + stride_stat + off, sum_exp, mask=row_ok)
    tl.store(part_ptr + 2 * stride_stat + off, p_gap, mask=row_ok)
    tl.store(part_ptr + 3 * stride_stat + off, p_sum, mask=row_ok)


@lazy_jit
def _ce_combine_kernel(
    part_ptr, loss_ptr, lse_ptr, psum_ptr, n_rows, n_chunks,
    BLOCK_B: tl.constexpr, BLOCK_C: tl.constexpr,
):
    # Merge the per-chunk (max, sum_exp, p_gap, p_sum) of each row: one launch instead of a
    # handful of tiny torch ops, which would cost more than the streaming pass itself at K = 65536.
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    chunks = tl.arange(0, BLOCK_C)
    row_ok = rows < n_rows
    mask = (chunks < n_chunks)[:, None] & row_ok[None, :]
    off = chunks[:, None] * n_rows + rows[None, :]
    stride_stat = n_chunks * n_rows
    m_c = tl.load(part_ptr + off, mask=mask, other=float("-inf"))
    sum_c = tl.load(part_ptr + stride_stat + off, mask=mask, other=0.0)
    gap_c = tl.load(part_ptr + 2 * stride_stat + off, mask=mask, other=0.0)
    psum_c = tl.load(part_ptr + 3 * stride_stat + off, mask=mask, other=0.0)
    m = tl.where(row_ok, tl.reduce(m_c, 0, max_combine), 0.0)  # padding rows: no -inf - -inf below
    shift = tl.where(mask, m[None, :] - m_c, 0.0)
    sum_exp = tl.where(row_ok, tl.reduce(sum_c * tl.exp(-shift), 0, add_combine), 1.0)
    psum = tl.reduce(psum_c, 0, add_combine)
    gap = tl.reduce(gap_c + psum_c * shift, 0, add_combine)
    log_sum = tl.log(sum_exp)
    tl.store(loss_ptr + rows, psum * log_sum + gap, mask=row_ok)
    tl.store(lse_ptr + rows, m + log_sum, mask=row_ok)
    tl.store(psum_ptr + rows, psum, mask=row_ok)


@lazy_jit
def _ce_bwd_kernel(
    g_ptr, s_ptr, p_ptr, lse_ptr, psum_ptr, ds_ptr, dp_ptr, n_rows, n_cols, stride_s, stride_p, inv_temp,
    NEED_DP: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    row_ok = rows < n_rows
    mask = row_ok[:, None] & (cols < n_cols)[None, :]
    r = rows.to(tl.int64)[:, None]
    c = cols[None, :]
    g = tl.load(g_ptr + rows, mask=row_ok, other=0.0).to(tl.float32)[:, None]
    lse = tl.load(lse_ptr + rows, mask=row_ok, other=0.0)[:, None]
    psum = tl.load(psum_ptr + rows, mask=row_ok, other=0.0)[:, None]
    z = tl.load(s_ptr + r * stride_s + c, mask=mask, other=0.0).to(tl.float32) * inv_temp
    p = tl.load(p_ptr + r * stride_p + c, mask=mask, other=0.0).to(tl.float32)
    ds = (tl.exp(z - lse) * psum - p) * (inv_temp * g)
    tl.store(ds_ptr + r * n_cols + c, ds.to(ds_ptr.dtype.element_ty), mask=mask)
    if NEED_DP:
        tl.store(dp_ptr + r * n_cols + c, ((lse - z) * g).to(dp_ptr.dtype.element_ty), mask=mask)


def _rows(t: torch.Tensor) -> torch.Tensor:
    return t if t.stride(-1) == 1 else t.contiguous()


def _ce_forward(s: torch.Tensor, p: torch.Tensor, inv_temp: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    B, K = s.shape
    loss, lse, psum = (torch.empty(B, device=s.device, dtype=torch.float32) for _ in range(3))
    if B == 0:
        return loss, lse, psum
    row_blocks = cdiv(B, _BLOCK_B)
    # Split K over several programs when B alone cannot fill the GPU (B = 64, K = 65536).
    chunks, cols_per_prog = split_programs(K, _BLOCK_K, cdiv(program_budget(s.device), row_blocks))
    part = torch.empty((4, chunks, B), device=s.device, dtype=torch.float32)
    _ce_fwd_kernel[(row_blocks, chunks)](
        s, p, part, B, K, s.stride(0), p.stride(0), cols_per_prog, inv_temp,
        BLOCK_B=_BLOCK_B, BLOCK_K=_BLOCK_K, num_warps=num_warps(_BLOCK_B * _BLOCK_K),
    )
    block_c = next_power_of_2(chunks)
    block_b = max(1, min(next_power_of_2(B), 2048 // block_c))
    _ce_combine_kernel[(cdiv(B, block_b),)](
        part, loss, lse, psum, B, chunks, BLOCK_B=block_b, BLOCK_C=block_c,
        num_warps=num_warps(block_b * block_c),
    )
    return loss, lse, psum


# The kernels as torch.library custom ops: a compiled DINO step sees each as one graph node.
@torch.library.custom_op("vitlab::softmax_cross_entropy", mutates_args=())
def softmax_cross_entropy_op(
    student_logits: torch.Tensor, teacher_probs: torch.Tensor, inv_temp: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """float32 [B] losses, and the logsumexp of ``s * inv_temp`` and the teacher mass of each row
    (what the backward needs)."""
    return _ce_forward(_rows(student_logits), _rows(teacher_probs), inv_temp)


@softmax_cross_entropy_op.register_fake
def _(student_logits, teacher_probs, inv_temp):
    return tuple(student_logits.new_empty(student_logits.shape[0], dtype=torch.float32) for _ in range(3))


@torch.library.custom_op("vitlab::softmax_cross_entropy_backward", mutates_args=())
def _ce_backward(
    grad_loss: torch.Tensor, student_logits: torch.Tensor, teacher_probs: torch.Tensor, lse: torch.Tensor,
    psum: torch.Tensor, inv_temp: float, need_dp: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients for the student logits and (``need_dp``; else an empty tensor) the teacher."""
    s, p = _rows(student_logits), _rows(teacher_probs)
    B, K = s.shape
    ds = torch.empty((B, K), device=s.device, dtype=s.dtype)
    dp = torch.empty((B, K) if need_dp else (0,), device=p.device, dtype=p.dtype)
    if B:
        BLOCK_M, BLOCK_N = tile_2d(K)
        _ce_bwd_kernel[(cdiv(B, BLOCK_M), cdiv(K, BLOCK_N))](
            grad_loss.contiguous(), s, p, lse, psum, ds, dp if need_dp else ds, B, K, s.stride(0), p.stride(0),
            inv_temp, NEED_DP=need_dp, BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, num_warps=num_warps(BLOCK_M * BLOCK_N),
        )
    return ds, dp


@_ce_backward.register_fake
def _(grad_loss, student_logits, teacher_probs, lse, psum, inv_temp, need_dp):
    return (student_logits.new_empty(student_logits.shape),
            teacher_probs.new_empty(teacher_probs.shape if need_dp else (0,)))


def _ce_setup_context(ctx, inputs, output):
    student_logits, teacher_probs, inv_temp = inputs
    _, lse, psum = output
    ctx.save_for_backward(student_logits, teacher_probs, lse, psum)
    ctx.inv_temp = inv_temp
    ctx.mark_non_differentiable(lse, psum)


def _ce_autograd(ctx, grad_loss, _grad_lse, _grad_psum):
    need_dp = ctx.needs_input_grad[1]
    ds, dp = _ce_backward(grad_loss, *ctx.saved_tensors, ctx.inv_temp, need_dp)
    return ds, (dp if need_dp else None), None


softmax_cross_entropy_op.register_autograd(_ce_autograd, setup_context=_ce_setup_context)


def softmax_cross_entropy(
    student_logits: torch.Tensor, teacher_probs: torch.Tensor, student_temp: float, backend: str = "auto"
) -> torch.Tensor:
    """Per-row ``-sum_k p_k * log_softmax(s / temp)_k`` without B x K temporaries.

    Args:
        student_logits: [B, K] student prototype scores (fp32/bf16/fp16).
        teacher_probs: [B, K] teacher targets, e.g. from :func:`~vitlab.kernels.sinkhorn.sinkhorn_knopp`.
        student_temp: student temperature (DINOv3: 0.1); must be > 0.
        backend: ``"auto" | "triton" | "torch"`` (see :mod:`vitlab.kernels.dispatch`).

    Returns:
        float32 [B] losses (average them for the DINO term). Gradients flow to
        ``student_logits`` and, if it requires grad, to ``teacher_probs``.
    """
    if student_logits.ndim != 2 or student_logits.shape != teacher_probs.shape:
        raise ValueError(
            f"softmax_cross_entropy needs student_logits and teacher_probs of one shape [B, K], got "
            f"{tuple(student_logits.shape)} and {tuple(teacher_probs.shape)}"
        )
    if student_logits.shape[1] == 0:
        raise ValueError("softmax_cross_entropy needs K >= 1 prototypes")
    if not student_temp > 0:
        raise ValueError(f"softmax_cross_entropy needs student_temp > 0, got {student_temp}")
    if resolve_backend(backend, student_logits, teacher_probs) == "torch":
        return softmax_cross_entropy_reference(student_logits, teacher_probs, student_temp)
    return softmax_cross_entropy_op(student_logits, teacher_probs, 1.0 / float(student_temp))[0]
