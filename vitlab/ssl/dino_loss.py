"""The DINO image-level self-distillation loss (Caron et al. 2021, "Emerging Properties in
Self-Supervised Vision Transformers"), with the Sinkhorn-Knopp teacher of DINOv2/DINOv3
(Oquab et al. 2023; Simeoni et al. 2025, "DINOv3").

Cross-entropy between the teacher's centred, sharpened CLS distribution on each global crop and the
student's distribution on every other crop of the same image.

The cross-entropy runs through :func:`~vitlab.kernels.softmax_cross_entropy` (on CUDA a Triton kernel
that streams K with an online logsumexp instead of keeping B x K fp32 copies). The loss is linear in
the teacher distribution, so each student crop is scored once against the sum of the teacher crops
it is paired with: ``sum_t CE(s, p_t) = CE(s, sum_t p_t)``.

Axis legend: S student crops (the T global crops first, then the local crops), T teacher (global)
crops, B images, K prototypes.
"""

from __future__ import annotations

import torch

from vitlab.kernels.cross_entropy import softmax_cross_entropy
from vitlab.ssl.centering import CenteredTeacherLoss

__all__ = ["DINOLoss"]


class DINOLoss(CenteredTeacherLoss):
    """DINO CLS loss with the teacher centering of DINOv3.

    Averaging (as DINOv3 ``SSLMetaArch.compute_losses``): the loss is the mean cross-entropy over
    every (student crop, teacher crop, image) triple except a global crop paired with itself.
    DINOv3 computes a local-crop loss and a diagonal-free global-crop loss and mixes them with
    weights proportional to their term counts; that mix is exactly this single mean when the
    student crops are passed as ``cat([globals, locals])``.

    Constructor and :meth:`teacher_probs` (on ``[T, B, K]`` teacher CLS logits): see
    :class:`~vitlab.ssl.centering.CenteredTeacherLoss`.
    """

    def forward(self, student_logits: torch.Tensor, teacher_probs: torch.Tensor, *,
                ignore_diagonal: bool = True, parts: bool = False) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Mean cross-entropy ``-sum_k p_teacher log p_student`` over crop pairs and images.

        Args:
            student_logits: student DINO-head outputs ``[S, B, K]``; student crop ``i < T`` must be
                the same view as teacher crop ``i``.
            teacher_probs: output of :meth:`teacher_probs`, ``[T, B, K]``.
            ignore_diagonal: skip the pairs (student crop i, teacher crop i) for ``i < min(S, T)``.
                Set ``False`` to score local crops alone against the teachers, as DINOv3's
                separate local-crop term does.
            parts: also return the loss's terms apart (detached): ``global`` (the mean over the pairs
                whose student crop is one of the first T, a global crop) and ``local`` (over the other
                crops' pairs; absent without them). The loss is their mean weighted by pair counts.

        Returns:
            Scalar loss (float32), or ``(loss, terms)`` with ``parts``.
        """
        n_student, batch, _ = student_logits.shape
        n_teacher = teacher_probs.shape[0]
        n_pairs = n_student * n_teacher - (min(n_student, n_teacher) if ignore_diagonal else 0)
        if n_pairs == 0:
            raise ValueError(f"no crop pairs left: {n_student} student and {n_teacher} teacher crops with "
                             f"ignore_diagonal={ignore_diagonal}")
        targets: dict[tuple[int, ...], torch.Tensor] = {}  # the local crops share one target
        total = student_logits.new_zeros((), dtype=torch.float32)
        sums = {"global": total, "local": total}  # summed losses and pair counts of the two kinds of crop
        counts = {"global": 0, "local": 0}
        for s in range(n_student):
            paired = tuple(t for t in range(n_teacher) if not (ignore_diagonal and t == s))
            if not paired:
                continue
            if paired not in targets:  # [B, K], rows sum to len(paired)
                if len(paired) == 1:
                    targets[paired] = teacher_probs[paired[0]]  # a view, no copy
                else:
                    targets[paired] = teacher_probs[list(paired)].sum(0)
            row_loss = softmax_cross_entropy(student_logits[s], targets[paired], self.student_temp,
                                             backend=self.kernels)  # [B]
            total = total + row_loss.sum()
            if parts:
                kind = "global" if s < n_teacher else "local"
                sums[kind] = sums[kind] + row_loss.detach().sum()
                counts[kind] += len(paired)
        loss = total / (n_pairs * batch)
        if not parts:
            return loss
        return loss, {kind: sums[kind] / (counts[kind] * batch) for kind in sums if counts[kind]}
