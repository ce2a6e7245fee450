"""Semantic-segmentation scores from a confusion matrix: mIoU and pixel accuracy (as mmsegmentation computes
them for ADE20K, the number DINOv3, Siméoni et al. 2025, reports for its linear probe).

Counts are summed over the whole dataset before dividing (not averaged per image); pixels labelled
``ignore_index`` count nowhere; a class absent from both labels and predictions has no IoU and is
left out of the mean.

Axis legend: C classes, P pixels.
"""

from __future__ import annotations

import torch

__all__ = ["confusion_matrix", "segmentation_scores"]


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int, *, ignore_index: int = 255
                     ) -> torch.Tensor:
    """Counts [C, C] (int64; rows: label, columns: prediction) of predicted vs labelled pixels.

    Args:
        pred: predicted classes, any shape (e.g. [B, H, W]).
        target: labels of the same shape; ``ignore_index`` pixels are not counted.
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    keep = target != ignore_index
    t, p = target[keep].long(), pred[keep].long()
    if t.numel() and (int(t.max()) >= num_classes or int(t.min()) < 0):
        raise ValueError(f"labels must be in [0, {num_classes}) or {ignore_index}, found {int(t.min())}..{int(t.max())}")
    return torch.bincount(t * num_classes + p, minlength=num_classes ** 2).reshape(num_classes, num_classes).cpu()


def segmentation_scores(confusion: torch.Tensor) -> dict[str, float | list[float]]:
    """``miou``, ``pixel_acc`` (%) and per-class ``iou`` (%, NaN for a class seen nowhere) of a [C, C] confusion matrix."""
    confusion = confusion.double()
    hit = confusion.diag()
    union = confusion.sum(0) + confusion.sum(1) - hit
    iou = torch.where(union > 0, hit / union.clamp_min(1), torch.full_like(hit, float("nan")))
    total = confusion.sum()
    return {"miou": 100 * iou.nanmean().item(), "pixel_acc": 100 * (hit.sum() / total.clamp_min(1)).item(),
            "iou": (100 * iou).tolist()}
