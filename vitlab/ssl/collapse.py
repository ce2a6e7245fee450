"""Collapse watch for DINO-style self-distillation (Caron et al. 2021, "Emerging Properties in
Self-Supervised Vision Transformers", section 5.3 on the two collapse modes).

Criteria, on K prototypes:

* Uniform collapse: the teacher output carries no information, every sample gets (nearly) the
  uniform distribution, and the DINO cross-entropy sits at ``ln K``. We flag it when every loss in the
  window the caller keeps is within ``rel_tol`` (1 %) of ``ln K``. A single step near ``ln K`` is
  normal at initialisation, hence the window.
* Dominant-prototype collapse: one prototype takes most of the teacher's probability mass over the
  batch. We flag it when the largest prototype share of the batch-mean distribution exceeds
  ``max_share`` (50 %).

With Sinkhorn-Knopp centering the *centred* teacher probabilities are balanced over the batch by
construction, so the share test cannot fire on them; pass the plain tempered softmax of the teacher
logits (``softmax(logits / teacher_temp)``) to watch the network itself.

Axis legend: ``...`` leading axes (crops, batch), K prototypes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

__all__ = ["collapse_stats", "teacher_entropy"]


@torch.no_grad()
def teacher_entropy(probs: torch.Tensor) -> torch.Tensor:
    """Mean per-sample entropy (nats) of teacher distributions ``[..., K]``; ``ln K`` when uniform."""
    probs = probs.float()
    return -(probs * torch.log(probs.clamp_min(1e-30))).sum(dim=-1).mean()


@torch.no_grad()
def collapse_stats(teacher_probs: torch.Tensor, dino_loss: float | torch.Tensor | Sequence[float],
                   num_prototypes: int, *, rel_tol: float = 0.01, max_share: float = 0.5) -> dict[str, float | bool]:
    """Numbers to log each step, and a verdict.

    Args:
        teacher_probs: teacher distributions ``[..., K]``.
        dino_loss: the current DINO loss, or the recent window of losses (e.g. a
            ``deque(maxlen=100)`` the engine keeps); uniform collapse needs all of them near ``ln K``.
        num_prototypes: K.
        rel_tol: relative distance to ``ln K`` that counts as "at ``ln K``".
        max_share: prototype share of the batch mass above which the batch counts as collapsed.

    Returns:
        ``entropy`` (mean per-sample), ``marginal_entropy`` (of the batch-mean distribution),
        ``ln_k``, ``max_prototype_share``, ``loss_at_ln_k``, ``dominant_prototype`` and
        ``collapsed`` (either criterion).
    """
    ln_k = math.log(num_prototypes)
    probs = teacher_probs.reshape(-1, teacher_probs.shape[-1]).float()  # [M, K]
    marginal = probs.mean(dim=0)  # [K]
    losses = [float(dino_loss)] if isinstance(dino_loss, (float, int, torch.Tensor)) else [float(x) for x in dino_loss]
    loss_at_ln_k = bool(losses) and all(abs(x - ln_k) <= rel_tol * ln_k for x in losses)
    share = float(marginal.max())
    dominant = share > max_share
    return {
        "entropy": float(teacher_entropy(probs)),
        "marginal_entropy": float(teacher_entropy(marginal)),
        "ln_k": ln_k,
        "max_prototype_share": share,
        "loss_at_ln_k": loss_at_ln_k,
        "dominant_prototype": dominant,
        "collapsed": loss_at_ln_k or dominant,
    }
