"""The iBOT masked-patch self-distillation loss (Zhou et al. 2022, "iBOT: Image BERT Pre-Training
with Online Tokenizer"), as used in DINOv2 and DINOv3 (Simeoni et al. 2025, "DINOv3").

The student sees the global crops with some patches replaced by a mask token; at those positions it
must predict the teacher's (unmasked) patch distribution over the iBOT prototypes.

Axis legend: I images (all global crops, crop-major), N patches per image, M masked patches in the
batch (the True entries of ``masks`` in row-major order), K prototypes.
"""

from __future__ import annotations

import torch

from vitlab.kernels.cross_entropy import softmax_cross_entropy
from vitlab.ssl.centering import CenteredTeacherLoss

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


class iBOTPatchLoss(CenteredTeacherLoss):
    """iBOT patch loss over the masked patches, averaged per image then over images.

    Each image contributes the mean cross-entropy over its masked patches; the sum is divided by the
    number of images ``I`` (masked or not), as DINOv3's ``forward_masked`` does. An image without
    masked patches therefore contributes zero, and a batch without any gives a zero loss.

    Constructor and :meth:`teacher_probs` (on ``[M, K]`` teacher logits at the masked positions;
    Sinkhorn-Knopp balances the prototypes over the masked patches of the whole global batch): see
    :class:`~vitlab.ssl.centering.CenteredTeacherLoss`.
    """

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
        patch_loss = softmax_cross_entropy(student_logits, teacher_probs, self.student_temp,
                                           backend=self.kernels)  # [M]
        return (patch_loss * masks_weight.to(patch_loss.device)).sum() / masks.shape[0]
