"""The DINO image-level self-distillation loss (Caron et al. 2021, "Emerging Properties in
Self-Supervised Vision Transformers"), with the Sinkhorn-Knopp teacher of DINOv2/DINOv3
(Oquab et al. 2023; Simeoni et al. 2025, "DINOv3").

Cross-entropy between the teacher's centred, sharpened CLS distribution on each global crop and the
student's distribution on every other crop of the same image.

Axis legend: S student crops (the T global crops first, then the local crops), T teacher (global)
crops, B images, K prototypes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

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
                ignore_diagonal: bool = True) -> torch.Tensor:
        """Mean cross-entropy ``-sum_k p_teacher log p_student`` over crop pairs and images.

        Args:
            student_logits: student DINO-head outputs ``[S, B, K]``; student crop ``i < T`` must be
                the same view as teacher crop ``i``.
            teacher_probs: output of :meth:`teacher_probs`, ``[T, B, K]``.
            ignore_diagonal: skip the pairs (student crop i, teacher crop i) for ``i < min(S, T)``.
                Set ``False`` to score local crops alone against the teachers, as DINOv3's
                separate local-crop term does.

        Returns:
            Scalar loss (float32).
        """
        n_student, batch, _ = student_logits.shape
        n_teacher = teacher_probs.shape[0]
        log_p_student = F.log_softmax(student_logits.float() / self.student_temp, dim=-1)  # [S, B, K]
        pair_loss = -torch.einsum("sbk,tbk->st", log_p_student, teacher_probs.float())  # [S, T]
        n_pairs = n_student * n_teacher
        if ignore_diagonal:
            n_diag = min(n_student, n_teacher)
            pair_loss = pair_loss * (1 - torch.eye(n_student, n_teacher, device=pair_loss.device))
            n_pairs -= n_diag
        if n_pairs == 0:
            raise ValueError(f"no crop pairs left: {n_student} student and {n_teacher} teacher crops with "
                             f"ignore_diagonal={ignore_diagonal}")
        return pair_loss.sum() / (n_pairs * batch)
