"""The DINO image-level self-distillation loss (Caron et al. 2021, "Emerging Properties in
Self-Supervised Vision Transformers"), with the Sinkhorn-Knopp teacher of DINOv2/DINOv3
(Oquab et al. 2023; Simeoni et al. 2025, "DINOv3").

Cross-entropy between the teacher's centred, sharpened CLS distribution on each global crop and the
student's distribution on every other crop of the same image.

Axis legend: S student crops (the T global crops first, then the local crops), T teacher (global)
crops, B images, K prototypes.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from vitlab.ssl.centering import SoftmaxCenter
from vitlab.ssl.sinkhorn import sinkhorn_knopp

__all__ = ["DINOLoss"]

Centering = Literal["sinkhorn_knopp", "softmax"]


class DINOLoss(nn.Module):
    """DINO CLS loss with the teacher centering of DINOv3.

    Averaging (as DINOv3 ``SSLMetaArch.compute_losses``): the loss is the mean cross-entropy over
    every (student crop, teacher crop, image) triple except a global crop paired with itself.
    DINOv3 computes a local-crop loss and a diagonal-free global-crop loss and mixes them with
    weights proportional to their term counts; that mix is exactly this single mean when the
    student crops are passed as ``cat([globals, locals])``.

    Args:
        out_dim: K, the number of prototypes of the DINO head.
        student_temp: student softmax temperature (DINOv3: 0.1).
        center_momentum: EMA momentum of the center in ``"softmax"`` centering (DINO: 0.9).
        centering: ``"sinkhorn_knopp"`` (DINOv3 default) or ``"softmax"`` (DINO's EMA center).
        sinkhorn_iterations: Sinkhorn-Knopp iterations (DINOv3: 3).
    """

    def __init__(self, out_dim: int, *, student_temp: float = 0.1, center_momentum: float = 0.9,
                 centering: Centering = "sinkhorn_knopp", sinkhorn_iterations: int = 3):
        super().__init__()
        if centering not in ("sinkhorn_knopp", "softmax"):
            raise ValueError(f"centering must be 'sinkhorn_knopp' or 'softmax', got {centering!r}")
        self.out_dim = out_dim
        self.student_temp = student_temp
        self.centering = centering
        self.sinkhorn_iterations = sinkhorn_iterations
        # Only the softmax teacher has state; Sinkhorn-Knopp centres each batch on its own.
        self.center = SoftmaxCenter(out_dim, momentum=center_momentum) if centering == "softmax" else None

    @torch.no_grad()
    def teacher_probs(self, teacher_logits: torch.Tensor, teacher_temp: float, *,
                      update_center: bool = True) -> torch.Tensor:
        """Centres and sharpens the teacher's CLS logits.

        With ``"softmax"`` centering the current center is used first and then moved towards this
        batch (the order of DINO, and of DINOv3 once its deferred update is resolved).

        Args:
            teacher_logits: teacher DINO-head outputs on the global crops, ``[T, B, K]``.
            teacher_temp: teacher temperature (DINOv3: 0.04 warmed up to 0.07).
            update_center: whether to update the EMA center (softmax centering only).

        Returns:
            float32 probabilities ``[T, B, K]`` summing to one over K.
        """
        if self.center is None:
            return sinkhorn_knopp(teacher_logits, teacher_temp, n_iterations=self.sinkhorn_iterations)
        probs = self.center(teacher_logits, teacher_temp)
        if update_center:
            self.center.update(teacher_logits)
        return probs

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
