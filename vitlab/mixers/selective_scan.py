"""Mamba's selective scan (Gu & Dao 2023, "Mamba: Linear-Time Sequence Modeling with Selective State
Spaces", Algorithm 2), in mamba_ssm's ``selective_scan_fn`` layout with grouped ``B``/``C`` (one group per
scan direction, as VMamba folds its four directions into the channels). For channel d and state n:

    h[t, d, n] = exp(delta[t, d] * A[d, n]) * h[t-1, d, n] + delta[t, d] * B[t, n] * u[t, d]
    y[t, d]    = sum_n C[t, n] * h[t, d, n] + D[d] * u[t, d]

(zero-order hold for A, Mamba's simplified Euler step for B). Two algorithms compute it: with one chunk
(``chunk_size >= L``, the CPU default) the scan streams (:mod:`vitlab.mixers.streamed_scan`: discretized a
tile of steps at a time, never ``[B, L, K, Dk, N]`` at once); with several, the discretized tensors are
formed whole and the recurrence runs by the chunked parallel scan of
:func:`~vitlab.mixers.linear_scan.linear_scan`, the readout ``C h`` a batched matrix product. On CUDA,
when ``mamba_ssm`` imports (and ``backend`` is not ``"torch"``, nor a :func:`~vitlab.kernels.torch_references`
block running), its fused kernel runs instead: it computes the same function but cannot be tested on
vitlab's CPU machines.

FLOPs (:func:`selective_scan_flop_count`): the recurrence's multiply-adds (one per state element and
step) plus the readout's (the same count): ``4 L D N`` per sequence; elementwise work (discretization,
``D u``) counts 0. Backward: 2x for the readout (a matrix product), 1x for the recurrence.

Axis legend: B batch, K groups (scan directions), Dk channels per group, D = K*Dk, N state size, L steps.
"""

from __future__ import annotations

import functools
import importlib.util

import torch

from vitlab.kernels.dispatch import torch_references_active
from vitlab.mixers.linear_scan import linear_scan
from vitlab.mixers.streamed_scan import streamed_selective_scan

__all__ = ["selective_scan", "selective_scan_flop_count", "mamba_ssm_available"]


@torch.compiler.assume_constant_result
@functools.cache
def mamba_ssm_available() -> bool:
    """True when mamba_ssm (Dao & Gu's CUDA kernels) is importable."""
    return importlib.util.find_spec("mamba_ssm") is not None


def selective_scan(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                   D: torch.Tensor, *, chunk_size: int | None = None, backend: str = "auto") -> torch.Tensor:
    """The selective scan of every channel of ``u``.

    Args:
        u: inputs [B, D, L].
        delta: step sizes [B, D, L], positive (softplus already applied).
        A: state matrix diagonals [D, N], negative.
        B, C: input and output projections [B, K, N, L]; channel d reads group ``d // (D / K)``.
        D: skip [D].
        chunk_size: steps per chunk of the parallel scan; ``>= L``: one chunk, streamed; None: one chunk on
            CPU, ``ceil(sqrt(L))`` elsewhere.
        backend: ``"auto"`` (mamba_ssm's kernel on CUDA when it imports) or ``"torch"``; vitlab's
            ``kernels`` setting (``"triton"`` counts as ``"auto"``).

    Returns:
        y [B, D, L] in ``u``'s dtype.
    """
    batch, channels, L = u.shape
    K, N = B.shape[1], B.shape[2]
    if channels % K or B.shape != (batch, K, N, L) or C.shape != B.shape or A.shape != (channels, N):
        raise ValueError(f"selective_scan needs u [B, D, L], A [D, N], B and C [B, K, N, L] with K dividing D; got "
                         f"u {tuple(u.shape)}, A {tuple(A.shape)}, B {tuple(B.shape)}, C {tuple(C.shape)}")
    if backend != "torch" and not torch_references_active() and u.is_cuda and mamba_ssm_available():
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn

        return selective_scan_fn(u, delta, A, B, C, D.float(), delta_softplus=False)
    Dk = channels // K
    one_chunk = u.device.type == "cpu" if chunk_size is None else chunk_size >= L
    if one_chunk:  # streamed, time-major: [L, B, K, Dk] and [L, B, K, N]
        steps = [x.unflatten(1, (K, Dk)).permute(3, 0, 1, 2) for x in (u, delta)]
        y = streamed_selective_scan(*steps, A.view(K, Dk, N), B.permute(3, 0, 1, 2), C.permute(3, 0, 1, 2))
        return (y.permute(1, 2, 3, 0).reshape(batch, channels, L) + u * D.unsqueeze(-1)).to(u.dtype)
    uu = u.unflatten(1, (K, Dk)).permute(0, 3, 1, 2)  # [B, L, K, Dk]
    dt = delta.unflatten(1, (K, Dk)).permute(0, 3, 1, 2)  # [B, L, K, Dk]
    log_a = dt.unsqueeze(-1) * A.view(K, Dk, N)  # [B, L, K, Dk, N]: exp(delta A), kept as a log
    b = (dt * uu).unsqueeze(-1) * B.permute(0, 3, 1, 2).unsqueeze(3)  # [B, L, K, Dk, N]
    h = linear_scan(log_a, b, chunk_size=chunk_size)  # [B, L, K, Dk, N]
    y = (h @ C.permute(0, 3, 1, 2).unsqueeze(-1).to(h.dtype)).squeeze(-1)  # [B, L, K, Dk]
    y = y + uu * D.view(K, Dk)
    return y.permute(0, 2, 3, 1).reshape(batch, channels, L).to(u.dtype)


def selective_scan_flop_count(batch: int, channels: int, length: int, state: int) -> tuple[int, int]:
    """``(forward, backward)`` FLOPs of :func:`selective_scan` on ``u`` [batch, channels, length] with ``state`` N."""
    elements = batch * channels * length * state
    return 2 * elements + 2 * elements, 2 * elements + 2 * 2 * elements
