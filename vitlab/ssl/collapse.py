"""Collapse watch for DINO-style self-distillation (Caron et al. 2021, "Emerging Properties in
Self-Supervised Vision Transformers", section 5.3 on the two collapse modes).

It reads the *target* the DINO loss uses: the teacher distribution after centering (Sinkhorn-Knopp
or the EMA center) and sharpening. The cross-entropy is that target's entropy plus the KL divergence of
the student from it, so a target at ``ln K`` puts the loss at ``ln K`` whatever the student does.
Criteria, on K prototypes:

* Uniform collapse: the target carries no information (every sample gets the uniform distribution),
  or the DINO cross-entropy sits at ``ln K``. We flag either when every value in the window the caller
  keeps is within ``rel_tol`` (1 %) of ``ln K``. A single step near ``ln K`` is normal at
  initialisation, hence the window.
* Dominant-prototype collapse: one prototype takes most of the target's probability mass over the
  batch. We flag it when the largest prototype share of the batch-mean target exceeds ``max_share``
  (50 %). Sinkhorn-Knopp balances the prototypes over the batch by construction, so with it this test
  cannot fire; the task logs the uncentred ``softmax(logits / teacher_temp)``'s share beside it.

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
def collapse_stats(target_probs: torch.Tensor, dino_loss: float | torch.Tensor | Sequence[float],
                   num_prototypes: int, *, target_entropies: Sequence[float] | None = None,
                   rel_tol: float = 0.01, max_share: float = 0.5) -> dict[str, float | bool]:
    """Numbers to log each step, and a verdict.

    Args:
        target_probs: the loss's teacher targets ``[..., K]`` (this step's).
        dino_loss: the current DINO loss, or the recent window of losses (e.g. a ``deque`` the task
            keeps); "at ``ln K``" needs all of them there.
        num_prototypes: K.
        target_entropies: the recent window of the targets' mean entropies (:func:`teacher_entropy`),
            this step's last, which is then not computed again; None: this step's alone.
        rel_tol: relative distance to ``ln K`` that counts as "at ``ln K``".
        max_share: prototype share of the batch mass above which the batch counts as collapsed.

    Returns:
        ``entropy`` (this step's target, mean per sample), ``marginal_entropy`` (of the batch-mean
        target), ``ln_k``, ``max_prototype_share``, ``loss_at_ln_k``, ``target_at_ln_k``,
        ``dominant_prototype`` and ``collapsed`` (any of the three).
    """
    ln_k = math.log(num_prototypes)
    probs = target_probs.reshape(-1, target_probs.shape[-1]).float()  # [M, K]
    marginal = probs.mean(dim=0)  # [K]
    entropy = float(target_entropies[-1]) if target_entropies else float(teacher_entropy(probs))
    at_ln_k = lambda values: bool(values) and all(abs(float(x) - ln_k) <= rel_tol * ln_k for x in values)  # noqa: E731
    losses = [dino_loss] if isinstance(dino_loss, (float, int, torch.Tensor)) else list(dino_loss)
    entropies = [entropy] if target_entropies is None else list(target_entropies)
    share = float(marginal.max())
    stats = {
        "entropy": entropy,
        "marginal_entropy": float(teacher_entropy(marginal)),
        "ln_k": ln_k,
        "max_prototype_share": share,
        "loss_at_ln_k": at_ln_k(losses),
        "target_at_ln_k": at_ln_k(entropies),
        "dominant_prototype": share > max_share,
    }
    stats["collapsed"] = stats["loss_at_ln_k"] or stats["target_at_ln_k"] or stats["dominant_prototype"]
    return stats
