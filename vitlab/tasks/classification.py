"""Supervised classification: cross-entropy with label smoothing, or binary cross-entropy, and optional
MixUp / CutMix.

MixUp (Zhang et al. 2018) and CutMix (Yun et al. 2019) are torchvision's ``v2.MixUp``/``v2.CutMix``,
applied to the batch on the training device inside the step, so they draw from the trainer's
checkpointed RNG (exact resume) rather than from data-loader workers.

Binary cross-entropy (``loss="bce"``) scores every class as its own yes/no question against the
(mixed) one-hot targets, as Wightman et al. 2021 ("ResNet strikes back") and DeiT III (Touvron et al.
2022) train on ImageNet-1k. ``bce_target_threshold`` binarises the mixed targets first: DeiT III's
code (facebookresearch/deit ``engine.py``, ``--bce-loss``) uses 0.0, so both classes of a mixed
image get target 1.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torchvision.transforms import v2

from vitlab.config import build
from vitlab.engine.distributed import all_reduce_sum
from vitlab.eval.accuracy import eval_mode, topk_correct
from vitlab.tasks.task import Task

__all__ = ["ClassificationTask", "topk_correct"]


class ClassificationTask(Task):
    """Trains ``model`` (logits ``[B, C]``) on (images, labels) batches.

    Args:
        model: the network config (injected by the trainer).
        label_smoothing: cross-entropy label smoothing (0.1 in DeiT).
        mixup_alpha: MixUp Beta parameter (0 disables).
        cutmix_alpha: CutMix Beta parameter (0 disables); with both on, one is picked per batch.
        loss: ``"cross_entropy"`` (softmax over classes) or ``"bce"`` (a sigmoid per class, the mean
            over batch and classes, as ``nn.BCEWithLogitsLoss``).
        bce_target_threshold: with ``"bce"``, targets above it become 1 and the rest 0 (DeiT III: 0.0);
            None keeps the mixed soft targets.
    """

    CONFIG_ARGS = ("model",)
    LOSSES = ("cross_entropy", "bce")

    def __init__(self, *, model: Any, label_smoothing: float = 0.0, mixup_alpha: float = 0.0,
                 cutmix_alpha: float = 0.0, loss: Literal["cross_entropy", "bce"] = "cross_entropy",
                 bce_target_threshold: float | None = None):
        super().__init__()
        if loss not in self.LOSSES:
            raise ValueError(f"loss must be one of {self.LOSSES}, got {loss!r}")
        if loss == "bce" and label_smoothing:
            raise ValueError("label_smoothing applies to loss='cross_entropy' only; got it with loss='bce'")
        if loss != "bce" and bce_target_threshold is not None:
            raise ValueError(f"bce_target_threshold applies to loss='bce' only; got it with loss={loss!r}")
        self.model = build(model)
        self.num_classes = self.model.num_classes
        self.label_smoothing = label_smoothing
        self.loss, self.bce_target_threshold = loss, bce_target_threshold
        mixes = [v2.MixUp(alpha=mixup_alpha, num_classes=self.num_classes)] if mixup_alpha > 0 else []
        mixes += [v2.CutMix(alpha=cutmix_alpha, num_classes=self.num_classes)] if cutmix_alpha > 0 else []
        self.mix = v2.RandomChoice(mixes) if mixes else None

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        images, labels = batch  # [B, C, H, W], [B]
        targets = labels
        if self.mix is not None:
            images, targets = self.mix(images, labels)  # targets become soft [B, num_classes]
        logits = self.model(images)
        if self.loss == "bce":
            loss = self.binary_cross_entropy(logits, targets)
        else:
            loss = F.cross_entropy(logits, targets, label_smoothing=self.label_smoothing)
        top1 = (logits.detach().argmax(dim=-1) == labels).float().mean()
        return loss, {"top1": top1}

    def binary_cross_entropy(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean BCE (float32) of logits ``[B, C]`` against labels ``[B]`` or (mixed) soft targets ``[B, C]``."""
        if targets.ndim == 1:
            targets = F.one_hot(targets, self.num_classes)
        targets = targets.float()
        if self.bce_target_threshold is not None:
            targets = (targets > self.bce_target_threshold).float()
        return F.binary_cross_entropy_with_logits(logits.float(), targets)

    def train_flops(self, batch: tuple[torch.Tensor, torch.Tensor]) -> int | None:
        """The network's forward + backward FLOPs for this batch (the loss is not counted)."""
        images = batch[0]
        if not hasattr(self.model, "flop_count"):
            return None
        return self.model.flop_count(inference=False, image_size=tuple(images.shape[-2:]),
                                     batch_size=images.shape[0])

    @torch.no_grad()
    def evaluate(self, make_loader: Callable[[str], Any], protocol: Any = None) -> dict[str, float]:
        """Top-1 / top-5 accuracy (%) and mean loss on ``data.val``, summed over ranks."""
        device = next(self.model.parameters()).device
        totals = torch.zeros(4, dtype=torch.float64, device=device)  # n, top1, top5, loss sum
        with eval_mode(self):
            for images, labels in make_loader("val"):
                images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
                logits = self.model(images).float()
                hits = topk_correct(logits, labels)
                totals += torch.stack([torch.tensor(len(labels), device=device, dtype=torch.float64),
                                       hits[1].double(), hits[5].double(),
                                       F.cross_entropy(logits, labels, reduction="sum").double()])
        totals = all_reduce_sum(totals)
        n = max(totals[0].item(), 1.0)
        return {"top1": 100 * totals[1].item() / n, "top5": 100 * totals[2].item() / n, "loss": totals[3].item() / n}
