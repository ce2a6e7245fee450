"""Linear semantic-segmentation probe on frozen patch features: DINOv3's dense protocol (Siméoni et al. 2025,
as DINOv2, Oquab et al. 2023, "linear" setting), on CPU-sized data.

The backbone is frozen. Its patch tokens after the final norm (``eval.seg_layers=1``: the last
block; ``4``: the last four blocks concatenated, as ``get_intermediate_layers`` gives them) feed a
head of BatchNorm + 1x1 convolution; its logits at the patch grid are upsampled bilinearly to the
label map's size and trained with pixel-wise cross-entropy (label 255 ignored). Scores: mIoU and
pixel accuracy (:mod:`vitlab.eval.seg_metrics`).

Protocol (the splits of :mod:`vitlab.eval.protocol`): ``eval.seg_val_size`` scenes of ``data.train``,
drawn with ``eval.split_seed``, are the validation split; one head per lr of ``eval.seg_lrs`` trains
on the other training images (AdamW, cosine lr, ``eval.seg_epochs`` epochs, over cached features),
the lr with the best validation mIoU is kept (ties: the first), and only that head scores
``data.val`` (the test set), once. Differences from DINOv3's recipe, for CPU budgets: features are
cached once (no augmentation of the probe's inputs), a fixed input size (no sliding window), and
an lr grid in place of its one tuned lr.

``eval.readout=pixels`` scores the raw-pixel baseline: each patch's pixels as its feature.

Axis legend: B batch, D feature width (x layers), h x w patch grid, H x W label map, C classes, G grid.
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset, Subset

from vitlab.data import IGNORE_INDEX, build_dataset, eval_loader, split_indices
from vitlab.eval.accuracy import eval_mode
from vitlab.eval.seg_metrics import confusion_matrix, segmentation_scores

__all__ = ["LinearSegHead", "patch_feature_maps", "train_seg_heads", "seg_probe"]


class LinearSegHead(nn.Module):
    """BatchNorm + 1x1 convolution: patch features [B, D, h, w] -> logits [B, C, h, w] (or [B, C, H, W] given ``size``).

    Args:
        in_dim: D, the feature width (times the number of layers concatenated).
        num_classes: C.
    """

    def __init__(self, *, in_dim: int, num_classes: int):
        super().__init__()
        self.in_dim, self.num_classes = in_dim, num_classes
        self.norm = nn.BatchNorm2d(in_dim)
        self.conv = nn.Conv2d(in_dim, num_classes, kernel_size=1)

    def forward(self, x: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        logits = self.conv(self.norm(x))
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False) if size is not None else logits


def patch_feature_maps(model: nn.Module, images: torch.Tensor, *, layers: int = 1, readout: str | None = None
                       ) -> torch.Tensor:
    """Frozen patch features [B, D * layers, h, w] of images [B, C, H, W].

    Args:
        layers: 1: the last block's patch tokens after the final norm; n: the last n blocks', normed,
            concatenated along D (DINOv3's four-layer variant uses 4).
        readout: None (the model's tokens) or ``pixels``: each patch's raw pixels [B, C * P * P, h, w].
    """
    _check_readout(readout)
    if readout == "pixels":
        return F.pixel_unshuffle(images, model.patch_size)
    if layers == 1:
        return model.forward_features(images)["patches"].permute(0, 3, 1, 2)
    return torch.cat(model.get_intermediate_layers(images, n=layers, reshape=True, norm=True), dim=1)


def _check_readout(readout: str | None) -> None:
    if readout not in (None, "pixels"):
        raise ValueError(f"eval.readout={readout!r} has no meaning for the segmentation probe (use none or pixels; "
                         "a run that set it for its k-NN: add eval.readout=null)")


@torch.no_grad()
def _feature_batches(model: nn.Module, dataset: Dataset, *, layers: int, readout: str | None, batch_size: int,
                     device: torch.device, num_workers: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(features [B, D, h, w] float32, masks [B, H, W] int64) per batch, in dataset order, features on CPU."""
    loader = eval_loader(dataset, batch_size=batch_size, num_workers=num_workers)
    autocast = torch.bfloat16 if device.type == "cuda" else None
    for images, masks in loader:
        if masks.ndim != 3:
            raise ValueError(f"the segmentation probe needs (image, mask [H, W]) samples; got labels of shape "
                             f"{tuple(masks.shape[1:])} per sample (a classification dataset?)")
        with torch.autocast(device.type, dtype=autocast, enabled=autocast is not None):
            feats = patch_feature_maps(model, images.to(device), layers=layers, readout=readout)
        yield feats.float().cpu(), masks.long()


def train_seg_heads(feats: torch.Tensor, masks: torch.Tensor, *, num_classes: int, lrs: list[float], epochs: int,
                    batch_size: int = 16, weight_decay: float = 1e-3, seed: int = 0) -> list[LinearSegHead]:
    """One :class:`LinearSegHead` per lr, trained on cached features [N, D, h, w] against masks [N, H, W].

    AdamW with a cosine lr over ``epochs``; every head sees the same mini-batches.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):  # seeded heads, and the caller's RNG left as it was
        torch.manual_seed(seed)
        heads = [LinearSegHead(in_dim=feats.shape[1], num_classes=num_classes) for _ in lrs]
    opts = [torch.optim.AdamW(h.parameters(), lr=lr, weight_decay=weight_decay) for h, lr in zip(heads, lrs)]
    steps_per_epoch = max(1, math.ceil(len(feats) / batch_size))
    total = epochs * steps_per_epoch
    scheds = [torch.optim.lr_scheduler.LambdaLR(o, lambda s: 0.5 * (1 + math.cos(math.pi * s / total))) for o in opts]
    for _ in range(epochs):
        order = torch.randperm(len(feats), generator=g)
        for idx in order.split(batch_size):
            if len(idx) < 2:  # BatchNorm needs two samples
                continue
            x, y = feats[idx].float(), masks[idx].long()
            for head, opt, sched in zip(heads, opts, scheds):
                loss = F.cross_entropy(head(x, size=y.shape[-2:]), y, ignore_index=IGNORE_INDEX)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
    return [h.eval() for h in heads]


def _num_classes(dataset: Dataset, masks: torch.Tensor) -> int:
    base = dataset.dataset if isinstance(dataset, Subset) else dataset
    known = getattr(base, "num_classes", None)
    if known:
        return int(known)
    labels = masks[masks != IGNORE_INDEX]
    return int(labels.max()) + 1 if labels.numel() else 1


def _segmentation_split(data_cfg: Any, split: str) -> Dataset:
    """``data.{split}`` with the eval transform; a dataset spec with a ``masks`` switch (:class:`FashionMNISTScenes`
    built for pretraining) is asked for masks."""
    cfg = data_cfg.copy()
    spec = cfg.get(split)
    if spec is not None and "masks" in spec:
        spec.masks = True
    return build_dataset(cfg, split, train=False)


@torch.no_grad()
def _score(heads: list[LinearSegHead], batches: Iterator[tuple[torch.Tensor, torch.Tensor]], num_classes: int
           ) -> tuple[list[torch.Tensor], int]:
    confusion = [torch.zeros(num_classes, num_classes, dtype=torch.long) for _ in heads]
    n = 0
    for x, y in batches:
        n += len(y)
        for g, head in enumerate(heads):
            pred = head(x, size=y.shape[-2:]).argmax(1)
            confusion[g] += confusion_matrix(pred, y, num_classes, ignore_index=IGNORE_INDEX)
    return confusion, n


def seg_probe(model: nn.Module, data_cfg: Any, protocol: Any, *, device: torch.device | str = "cpu",
              batch_size: int | None = None, num_workers: int = 0, progress: bool = False
              ) -> tuple[dict[str, Any], LinearSegHead]:
    """The linear segmentation probe of a frozen ``model`` under the protocol (module docstring).

    Args:
        model: a backbone with ``forward_features`` (``patches`` [B, h, w, D]) and ``get_intermediate_layers``.
        data_cfg: the ``data`` config; ``data.train`` and ``data.val`` give (image, mask) samples.
        protocol: the ``eval`` section (:class:`vitlab.config.EvalConfig`): ``seg_layers``, ``seg_val_size``,
            ``seg_lrs``, ``seg_epochs``, ``split_seed``, ``readout`` (None or ``pixels``).
        batch_size: images per feature-extraction batch (default: ``data.eval_batch_size``).

    Returns:
        The scores (``seg_miou``, ``seg_pixel_acc``, ``seg_iou`` per class, on the test set;
        ``seg_val_miou`` per lr and the chosen ``seg_lr``; split sizes) and the chosen head.
    """
    device = torch.device(device)
    readout, layers = protocol.readout, int(protocol.seg_layers)
    _check_readout(readout)  # before any data is built
    batch_size = batch_size or data_cfg.eval_batch_size or data_cfg.batch_size
    with eval_mode(model):
        kwargs = dict(layers=layers, readout=readout, batch_size=batch_size, device=device, num_workers=num_workers)
        train = _segmentation_split(data_cfg, "train")
        index = split_indices(len(train), SimpleNamespace(val_size=protocol.seg_val_size, split_seed=protocol.split_seed,
                                                          monitor_bank=None))
        bank, holdout = Subset(train, index["bank"].tolist()), Subset(train, index["holdout"].tolist())
        if progress:
            print(f"[vitlab] segmentation features of the bank: {len(bank)} images", flush=True)
        cached = list(_feature_batches(model, bank, **kwargs))
        feats = torch.cat([x.half() for x, _ in cached])  # [N, D, h, w]: half precision halves the cache
        masks = torch.cat([y.to(torch.uint8) for _, y in cached])  # [N, H, W]: labels < 255 and 255 fit
        del cached
        num_classes = _num_classes(train, masks)
        lrs = [float(lr) for lr in protocol.seg_lrs]
        if progress:
            print(f"[vitlab] training {len(lrs)} linear heads ({feats.shape[1]} -> {num_classes} classes, "
                  f"{feats.shape[2]}x{feats.shape[3]} patches -> {masks.shape[1]}x{masks.shape[2]} labels)", flush=True)
        heads = train_seg_heads(feats, masks, num_classes=num_classes, lrs=lrs, epochs=int(protocol.seg_epochs))
        feature_dim, grid = int(feats.shape[1]), list(feats.shape[2:])
        del feats, masks
        val, n_val = _score(heads, _feature_batches(model, holdout, **kwargs), num_classes)
        val_miou = [segmentation_scores(c)["miou"] for c in val]
        best = max(range(len(lrs)), key=lambda g: (val_miou[g], -g))  # ties: the first in the grid
        test_set = _segmentation_split(data_cfg, "val")
        if progress:
            print(f"[vitlab] scoring lr {lrs[best]} on the test set: {len(test_set)} images", flush=True)
        (test,), n_test = _score([heads[best]], _feature_batches(model, test_set, **kwargs), num_classes)
        scores = segmentation_scores(test)
    result = {"seg_miou": scores["miou"], "seg_pixel_acc": scores["pixel_acc"], "seg_iou": scores["iou"],
              "seg_lr": lrs[best], "seg_val_miou": val_miou[best],
              **{f"seg_val_miou_lr{lr:g}": m for lr, m in zip(lrs, val_miou)},
              "seg_layers": layers, "readout": readout or "patches", "num_classes": num_classes,
              "feature_dim": feature_dim, "patch_grid": grid,
              "bank_samples": len(bank), "holdout_samples": n_val, "test_samples": n_test}
    return result, heads[best]
