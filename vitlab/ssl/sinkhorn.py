"""Sinkhorn-Knopp teacher centering (Caron et al. 2020, "Unsupervised Learning of Visual Features by
Contrasting Cluster Assignments", SwAV), as used for the DINO and iBOT teachers in DINOv2 and DINOv3
(Oquab et al. 2023; Simeoni et al. 2025).

The teacher scores are turned into soft assignments whose prototype marginal is (approximately)
uniform over the batch, which stops one prototype from absorbing every sample.

Numerics: the reference code forms ``exp(logits / temp)`` directly, which overflows float32 as soon
as ``logits / temp > 88`` (a logit of 3.5 at the warm-up temperature 0.04; dinov2 PR 583). We run
the same iterations in the log domain: every normalisation becomes a log-sum-exp, which subtracts
the maximum before exponentiating, so logits of magnitude 100 at temperature 0.04 stay finite and
no prototype row can underflow to an all-zero row (which would give 0/0 in the linear version).
The global scalings of the reference (divide by the total mass, by ``K`` and by ``B``) are constant
shifts in the log domain that the next normalisation removes, so the output is identical.

Axis legend: M samples (crops or masked patches) on this rank, K prototypes.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

__all__ = ["sinkhorn_knopp"]


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def _logsumexp_over_samples(scores: torch.Tensor, group=None) -> torch.Tensor:
    """``log sum_m exp(scores[m, k])`` over the samples of every rank.  # [1, K]"""
    if not _distributed():
        return torch.logsumexp(scores, dim=0, keepdim=True)
    # A rank may hold no masked patch at all: it still joins both collectives.
    if scores.shape[0] > 0:
        peak = scores.amax(dim=0, keepdim=True)  # [1, K]
    else:
        peak = scores.new_full((1, scores.shape[1]), float("-inf"))
    dist.all_reduce(peak, op=dist.ReduceOp.MAX, group=group)
    mass = torch.exp(scores - peak).sum(dim=0, keepdim=True)  # [1, K]
    dist.all_reduce(mass, group=group)
    return peak + torch.log(mass)


@torch.no_grad()
def sinkhorn_knopp(
    teacher_logits: torch.Tensor, teacher_temp: float, *, n_iterations: int = 3, group=None
) -> torch.Tensor:
    """Soft assignments of samples to prototypes with (near) equal prototype marginals.

    Each iteration first rescales every prototype so that its total mass over the (global) batch is
    ``1/K``, then every sample so that its row sums to one. With the three iterations of DINOv3 the
    rows sum to one exactly and the prototype marginals are close to ``M_total / K``.

    When ``torch.distributed`` is initialised, the prototype sums are all-reduced over ``group``, so
    the marginals are balanced over the global batch, as in DINOv3. Ranks may hold different numbers
    of samples (the iBOT case: masked patch counts differ), including none.

    Args:
        teacher_logits: teacher head outputs, ``[M, K]`` or ``[T, B, K]`` (flattened over the
            leading axes and restored on return). Computed in float32 whatever the input dtype.
        teacher_temp: teacher temperature (DINOv3: warm-up from 0.04 to 0.07).
        n_iterations: Sinkhorn iterations (DINOv3: 3).
        group: process group for the all-reduce (default: the world).

    Returns:
        Teacher probabilities with the input's shape, float32, summing to one over the last axis.
    """
    if n_iterations < 1:
        raise ValueError(f"n_iterations must be >= 1, got {n_iterations}")
    shape = teacher_logits.shape
    scores = teacher_logits.reshape(-1, shape[-1]).float() / teacher_temp  # [M, K]
    for _ in range(n_iterations):
        scores = scores - _logsumexp_over_samples(scores, group)  # each prototype: equal mass
        scores = torch.log_softmax(scores, dim=-1)  # each sample: a distribution
    return scores.exp().reshape(shape)
