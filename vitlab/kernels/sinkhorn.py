"""Sinkhorn-Knopp centering of the teacher for DINO/iBOT (Caron et al. 2020, SwAV; used in
DINOv2, Oquab et al. 2023, and DINOv3, Siméoni et al. 2025), computed in the log domain.

DINOv3 forms ``Q = exp(logits / temp)^T`` [K, B], divides by its total, then alternately makes
every prototype row sum to 1/K and every sample column sum to 1/B, ``n_iterations`` times, and
finally scales so each sample's probabilities sum to 1. With temp 0.04 and logits of size 100
the exponent reaches 2500: ``exp`` overflows, and after a max shift whole columns underflow to
0 and the normalisations divide 0 by 0.

The same iteration in the log domain keeps two potentials, ``u`` [K] and ``v`` [B], with
``log Q[b, k] = x[b, k] - u[k] - v[b]`` and ``x = logits / temp``:

    u[k] = logsumexp_b(x[b, k] - v[b]) + log K   (prototype step: rows of Q sum to 1/K;
                                                  the sum runs over the samples of all ranks)
    w[b] = logsumexp_k(x[b, k] - u[k])           (sample step: columns sum to 1/B ...
    v[b] = w[b] + log B                           ... over the global batch B)
    P[b, k] = exp(x[b, k] - u[k] - w[b])         (the final scaling by B: each row sums to 1)

Each logsumexp subtracts its own max before ``exp``, so nothing overflows and nothing divides
by zero. DINOv3's first division by the total is a constant absorbed by the first ``u``. The
``log K`` and ``log B`` terms pick the one fixed point with total mass 1; without them the
potentials would drift by log(K/B) per iteration and lose precision. In exact arithmetic this
equals DINOv3's algorithm for any ``n_iterations >= 1``. The Triton path never materialises
``x``: each step is a blockwise online logsumexp over the logits.

Multi-GPU: the prototype step reduces over the global batch. Pass ``all_reduce``, an in-place
reduction ``all_reduce(tensor, op)`` with op ``"max"`` or ``"sum"`` (e.g.
:func:`distributed_all_reduce`); it is also used once to sum the batch sizes. Without it the
batch is the local one (a single process).

Axis legend: B samples (teacher crops on this rank), K prototypes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

import torch

from vitlab.kernels._triton import (
    add_combine,
    cdiv,
    lazy_jit,
    max_combine,
    num_warps,
    program_budget,
    row_tile,
    split_programs,
    tile_2d,
)
from vitlab.kernels.dispatch import resolve_backend

if TYPE_CHECKING:  # bound to the real module at the first launch, see vitlab.kernels._triton
    import triton.language as tl  # noqa: TC004 - kernels see it only when jitted

__all__ = ["AllReduce", "distributed_all_reduce", "sinkhorn_knopp", "sinkhorn_knopp_reference"]

AllReduce = Callable[[torch.Tensor, Literal["sum", "max"]], None]


def distributed_all_reduce(tensor: torch.Tensor, op: Literal["sum", "max"]) -> None:
    """An ``all_reduce`` hook over the default ``torch.distributed`` process group."""
    import torch.distributed as dist

    dist.all_reduce(tensor, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX)


def _global_logsumexp(local: torch.Tensor, all_reduce: AllReduce | None) -> torch.Tensor:
    """Combine per-rank logsumexps into the logsumexp over all ranks (max-shifted, so finite)."""
    if all_reduce is None:
        return local
    m = local.clone()
    all_reduce(m, "max")
    total = torch.exp(local - m)
    all_reduce(total, "sum")
    return m + torch.log(total)


def _global_batch(teacher_logits: torch.Tensor, all_reduce: AllReduce | None) -> float:
    """B summed over ranks (every rank joins this all-reduce, whatever its B)."""
    B = float(teacher_logits.shape[0])
    if all_reduce is not None:
        total = torch.tensor([B], device=teacher_logits.device)
        all_reduce(total, "sum")
        B = total.item()
    return B


def sinkhorn_knopp_reference(
    teacher_logits: torch.Tensor, temp: float | torch.Tensor, n_iterations: int = 3,
    all_reduce: AllReduce | None = None, global_batch: float | None = None,
) -> torch.Tensor:
    """Plain torch log-domain Sinkhorn-Knopp; float32 [B, K] probabilities (see module docstring).

    ``global_batch`` is B summed over ranks when the caller already knows it (saves a collective).
    """
    if global_batch is None:
        global_batch = _global_batch(teacher_logits, all_reduce)
    log_k, log_b = math.log(teacher_logits.shape[1]), math.log(global_batch)
    x = teacher_logits.float() * (1.0 / temp)  # multiply by the reciprocal, as the kernel does
    v = x.new_zeros(x.shape[0], 1)
    for _ in range(n_iterations):
        u = _global_logsumexp(torch.logsumexp(x - v, dim=0), all_reduce) + log_k  # [K]
        w = torch.logsumexp(x - u, dim=1, keepdim=True)  # [B, 1]
        v = w + log_b
    return torch.exp(x - u - w)


@lazy_jit
def _lse_partial_kernel(
    x_ptr, bias_ptr, out_ptr, n_keep, n_red, stride_keep, stride_red, red_per_prog, inv_temp_ptr,
    BLOCK_KEEP: tl.constexpr, BLOCK_RED: tl.constexpr,
):
    # out[chunk, i] = logsumexp_{j in chunk}(x[i, j] * inv_temp - bias[j]), i on the kept axis and
    # j on the reduced one. The axes come as strides, so one kernel serves both the prototype
    # step (reduce over samples) and the sample step (reduce over prototypes).
    chunk = tl.program_id(1)
    inv_temp = tl.load(inv_temp_ptr)  # a device scalar: a scheduled temperature needs no host sync
    keep = tl.program_id(0) * BLOCK_KEEP + tl.arange(0, BLOCK_KEEP)
    keep_ok = keep < n_keep
    keep_off = keep.to(tl.int64)[:, None] * stride_keep
    m = tl.full([BLOCK_KEEP], float("-inf"), tl.float32)
    acc = tl.full([BLOCK_KEEP], 0.0, tl.float32)
    red_end = tl.minimum((chunk + 1) * red_per_prog, n_red)
    # Online logsumexp (Milakov & Gimelshein 2018): rescale the running sum when the max grows.
    # Chunks are never empty, so m is finite after the first block and exp(-inf - m) = 0.
    for start in range(chunk * red_per_prog, red_end, BLOCK_RED):
        red = start + tl.arange(0, BLOCK_RED)
        red_ok = red < red_end
        x = tl.load(x_ptr + keep_off + red.to(tl.int64)[None, :] * stride_red,
                    mask=keep_ok[:, None] & red_ok[None, :], other=0.0).to(tl.float32)
        bias = tl.load(bias_ptr + red, mask=red_ok, other=0.0)
        z = tl.where(red_ok[None, :], x * inv_temp - bias[None, :], float("-inf"))
        m_new = tl.maximum(m, tl.reduce(z, 1, max_combine))
        acc = acc * tl.exp(m - m_new) + tl.reduce(tl.exp(z - m_new[:, None]), 1, add_combine)
        m = m_new
    tl.store(out_ptr + chunk * n_keep + keep, m + tl.log(acc), mask=keep_ok)


@lazy_jit
def _sinkhorn_probs_kernel(
    x_ptr, u_ptr, w_ptr, p_ptr, n_rows, n_cols, stride_x, inv_temp_ptr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    inv_temp = tl.load(inv_temp_ptr)
    cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    col_ok = cols < n_cols
    rows, row_ok, mask, r = row_tile(tl.program_id(0) * BLOCK_M, n_rows, col_ok, BLOCK_M)
    x = tl.load(x_ptr + r * stride_x + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    u = tl.load(u_ptr + cols, mask=col_ok, other=0.0)[None, :]
    w = tl.load(w_ptr + rows, mask=row_ok, other=0.0)[:, None]
    log_p = tl.where(mask, x * inv_temp - u - w, float("-inf"))  # no exp overflow in padding lanes
    tl.store(p_ptr + r * n_cols + cols[None, :], tl.exp(log_p), mask=mask)


# The two launches as torch.library custom ops: a compiled DINO step sees each as one graph node,
# and the Python iteration (and the all-reduces between the steps) around them traces as is.
@torch.library.custom_op("vitlab::sinkhorn_logsumexp", mutates_args=())
def sinkhorn_logsumexp(x: torch.Tensor, bias: torch.Tensor, inv_temp: torch.Tensor, over_samples: bool) -> torch.Tensor:
    """Local logsumexp of ``x * inv_temp - bias`` over samples ([K] out) or prototypes ([B] out);
    ``x`` [B, K] with unit stride over K, ``inv_temp`` a float32 scalar tensor."""
    B, K = x.shape
    if B == 0:  # a rank without samples (iBOT: no masked patch) still joins the all-reduces
        return torch.full((K,) if over_samples else (0,), float("-inf"), device=x.device)
    if over_samples:  # keep prototypes (contiguous), reduce over samples
        n_keep, n_red, s_keep, s_red, block_keep, block_red = K, B, 1, x.stride(0), 256, 16
    else:
        n_keep, n_red, s_keep, s_red, block_keep, block_red = B, K, x.stride(0), 1, 4, 1024
    keep_blocks = cdiv(n_keep, block_keep)
    chunks, red_per_prog = split_programs(n_red, block_red, cdiv(program_budget(x.device), keep_blocks))
    part = torch.empty((chunks, n_keep), device=x.device, dtype=torch.float32)
    _lse_partial_kernel[(keep_blocks, chunks)](
        x, bias, part, n_keep, n_red, s_keep, s_red, red_per_prog, inv_temp,
        BLOCK_KEEP=block_keep, BLOCK_RED=block_red, num_warps=num_warps(block_keep * block_red),
    )
    return part[0].clone() if chunks == 1 else torch.logsumexp(part, dim=0)


@sinkhorn_logsumexp.register_fake
def _(x, bias, inv_temp, over_samples):
    return x.new_empty(x.shape[1] if over_samples else x.shape[0], dtype=torch.float32)


@torch.library.custom_op("vitlab::sinkhorn_probs", mutates_args=())
def sinkhorn_probs(x: torch.Tensor, u: torch.Tensor, w: torch.Tensor, inv_temp: torch.Tensor) -> torch.Tensor:
    """``exp(x * inv_temp - u[k] - w[b])``: float32 [B, K] probabilities from the potentials."""
    B, K = x.shape
    probs = torch.empty((B, K), device=x.device, dtype=torch.float32)
    if B:
        BLOCK_M, BLOCK_N = tile_2d(K)
        _sinkhorn_probs_kernel[(cdiv(B, BLOCK_M), cdiv(K, BLOCK_N))](
            x, u.contiguous(), w.contiguous(), probs, B, K, x.stride(0), inv_temp,
            BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, num_warps=num_warps(BLOCK_M * BLOCK_N),
        )
    return probs


@sinkhorn_probs.register_fake
def _(x, u, w, inv_temp):
    return x.new_empty(x.shape, dtype=torch.float32)


def _sinkhorn_triton(logits, temp, n_iterations, all_reduce, global_batch):
    log_k, log_b = math.log(logits.shape[1]), math.log(global_batch)
    x = logits if logits.stride(-1) == 1 else logits.contiguous()
    B = x.shape[0]
    # As the torch path: the reciprocal of a float in double, of a tensor in its own dtype.
    inv_temp = 1.0 / temp if isinstance(temp, torch.Tensor) else torch.tensor(1.0 / temp)
    inv_temp = inv_temp.to(device=x.device, dtype=torch.float32).reshape(())
    v = torch.zeros(B, device=x.device, dtype=torch.float32)
    for _ in range(n_iterations):
        u = _global_logsumexp(sinkhorn_logsumexp(x, v, inv_temp, True), all_reduce) + log_k
        w = sinkhorn_logsumexp(x, u, inv_temp, False)
        v = w + log_b
    return sinkhorn_probs(x, u, w, inv_temp)


def sinkhorn_knopp(
    teacher_logits: torch.Tensor,
    temp: float | torch.Tensor,
    n_iterations: int = 3,
    all_reduce: AllReduce | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """Teacher probabilities by Sinkhorn-Knopp centering, numerically stable at any temperature.

    The one Sinkhorn-Knopp of vitlab: the DINO and iBOT losses centre their teachers with it
    (:class:`~vitlab.ssl.centering.CenteredTeacherLoss`, which passes
    :func:`distributed_all_reduce` when ``torch.distributed`` is initialised, as DINOv3's
    ``sinkhorn_knopp_teacher`` all-reduces its sums).

    Args:
        teacher_logits: [B, K] prototype scores of the teacher's crops on this rank, or [..., K]
            (flattened over the leading axes, which are restored on return: DINO's [T, B, K]).
            B may be 0 (iBOT: no masked patch); with ``all_reduce`` that rank still joins every
            collective, and when the global batch is empty the result is empty.
        temp: teacher temperature (DINOv3 warms it from 0.04 to 0.07); must be > 0. A 0-dim tensor
            (the DINO task's scheduled value) is not checked, so that a compiled step takes it as an
            input without a data-dependent branch; the Triton kernels read it on the device.
        n_iterations: Sinkhorn iterations (DINOv3: 3); must be >= 1.
        all_reduce: in-place ``all_reduce(tensor, "max" | "sum")`` across data-parallel ranks
            (e.g. :func:`distributed_all_reduce`), or None for a single process.
        backend: ``"auto" | "triton" | "torch"`` (see :mod:`vitlab.kernels.dispatch`).

    Returns:
        float32 with the input's shape; each row sums to 1 and, as iterations grow, each
        prototype gets mass B/K. No gradient (it is a teacher target).
    """
    if teacher_logits.ndim < 2:
        raise ValueError(f"sinkhorn_knopp needs teacher_logits [..., K], got {tuple(teacher_logits.shape)}")
    if not isinstance(temp, torch.Tensor) and not temp > 0:
        raise ValueError(f"sinkhorn_knopp needs temp > 0, got {temp}")
    if n_iterations < 1:
        raise ValueError(f"sinkhorn_knopp needs n_iterations >= 1, got {n_iterations}")
    shape = teacher_logits.shape
    if shape[-1] == 0:
        raise ValueError(f"sinkhorn_knopp needs K >= 1 prototypes, got {tuple(shape)}")
    logits = teacher_logits.reshape(-1, shape[-1])  # [B, K]
    with torch.no_grad():
        global_batch = _global_batch(logits, all_reduce)
        if global_batch == 0:  # nothing to balance on any rank
            return logits.new_zeros(logits.shape, dtype=torch.float32).reshape(shape)
        if resolve_backend(backend, logits) == "torch":
            probs = sinkhorn_knopp_reference(logits, temp, n_iterations, all_reduce, global_batch)
        else:
            probs = _sinkhorn_triton(logits, temp, n_iterations, all_reduce, global_batch)
    return probs.reshape(shape)
