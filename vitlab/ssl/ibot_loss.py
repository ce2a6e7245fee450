"""The iBOT masked-patch self-distillation loss (Zhou et al. 2022, "iBOT: Image BERT Pre-Training
with Online Tokenizer"), as used in DINOv2 and DINOv3 (Simeoni et al. 2025, "DINOv3").

The student sees the global crops with some patches replaced by a mask token; at those positions it
must predict the teacher's (unmasked) patch distribution over the iBOT prototypes.

Axis legend: I images (all global crops, crop-major), N patches per image, M masked patches in the
batch (the True entries of ``masks`` in row-major order), K prototypes.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from vitlab.ssl.centering import SoftmaxCenter
from vitlab.ssl.sinkhorn import sinkhorn_knopp

__all__ = ["iBOTPatchLoss", "masked_patch_weights"]


def masked_patch_weights(masks: torch.Tensor) -> torch.Tensor:
    """Per masked patch weight ``1 / (masked patches in its image)``.

    Args:
        masks: ``[I, N]`` bool.

    Returns:
        ``[M]`` float32, in the order of ``masks.nonzero()``; each masked image's weights sum to one.
    """
    per_image = 1.0 / masks.sum(dim=-1, keepdim=True).clamp(min=1).float()  # [I, 1]
    return per_image.expand(masks.shape)[masks]  # [M]


class iBOTPatchLoss(nn.Module):
    """iBOT patch loss over the masked patches, averaged per image then over images.

    Each image contributes the mean cross-entropy over its masked patches; the sum is divided by the
    number of images ``I`` (masked or not), as DINOv3's ``forward_masked`` does. An image without
    masked patches therefore contributes zero, and a batch without any gives a zero loss.

    Args:
        out_dim: K, the number of prototypes of the iBOT head.
        student_temp: student softmax temperature (DINOv3: 0.1).
        center_momentum: EMA momentum of the center in ``"softmax"`` centering.
        centering: ``"sinkhorn_knopp"`` (DINOv3 default) or ``"softmax"``.
        sinkhorn_iterations: Sinkhorn-Knopp iterations (DINOv3: 3).
    """

    def __init__(self, out_dim: int, *, student_temp: float = 0.1, center_momentum: float = 0.9,
                 centering: Literal["sinkhorn_knopp", "softmax"] = "sinkhorn_knopp",
                 sinkhorn_iterations: int = 3):
        super().__init__()
        if centering not in ("sinkhorn_knopp", "softmax"):
            raise ValueError(f"centering must be 'sinkhorn_knopp' or 'softmax', got {centering!r}")
        self.out_dim = out_dim
        self.student_temp = student_temp
        self.centering = centering
        self.sinkhorn_iterations = sinkhorn_iterations
        self.center = SoftmaxCenter(out_dim, momentum=center_momentum) if centering == "softmax" else None

    @torch.no_grad()
    def teacher_probs(self, teacher_logits: torch.Tensor, teacher_temp: float, *,
                      update_center: bool = True) -> torch.Tensor:
        """Centres and sharpens the teacher's logits at the masked positions.

        Sinkhorn-Knopp balances the prototypes over the masked patches of the whole (global) batch.

        Args:
            teacher_logits: teacher iBOT-head outputs at the masked positions, ``[M, K]``.
            teacher_temp: teacher temperature.
            update_center: whether to update the EMA center (softmax centering only).

        Returns:
            float32 probabilities ``[M, K]``.
        """
        if self.center is None:
            return sinkhorn_knopp(teacher_logits, teacher_temp, n_iterations=self.sinkhorn_iterations)
        probs = self.center(teacher_logits, teacher_temp)
        if update_center:
            self.center.update(teacher_logits)
        return probs

    def forward(self, student_logits: torch.Tensor, teacher_probs: torch.Tensor, masks: torch.Tensor,
                masks_weight: torch.Tensor | None = None) -> torch.Tensor:
        """Weighted cross-entropy over the masked patches.

        Args:
            student_logits: student iBOT-head outputs at the masked positions, ``[M, K]``.
            teacher_probs: output of :meth:`teacher_probs`, ``[M, K]``.
            masks: ``[I, N]`` bool, the student masks; gives the image count and default weights.
            masks_weight: ``[M]`` per-patch weights from the collate (default:
                :func:`masked_patch_weights` of ``masks``).

        Returns:
            Scalar loss (float32).
        """
        if masks_weight is None:
            masks_weight = masked_patch_weights(masks)
        log_p_student = F.log_softmax(student_logits.float() / self.student_temp, dim=-1)  # [M, K]
        patch_loss = -(teacher_probs.float() * log_p_student).sum(dim=-1)  # [M]
        return (patch_loss * masks_weight.to(patch_loss.device)).sum() / masks.shape[0]
