"""Semantic-segmentation folders in the ADE20K / Pascal VOC layout, surviving bad files.

Layout (ADE20K's ``ADEChallengeData2016``; VOC converted the same way)::

    root/images/{split}/<stem>.jpg|.jpeg|.png      RGB images
    root/annotations/{split}/<stem>.png            label maps: one class index per pixel (mode L or P)

A missing label map is an error at construction naming the image and the expected file; a label
map whose size differs from its image's is an error naming both when read. An unreadable image or
label map is skipped with a warning, as :class:`vitlab.data.ImageFolder` does (``__getitem__`` returns
``None``, :func:`vitlab.data.collate_skip_none` drops it). Label 255 is ignored by the probe;
``reduce_zero_label`` maps ADE20K's 0 ("other") to 255 and shifts classes 1..150 to 0..149, as
mmsegmentation does.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import tv_tensors

__all__ = ["SegmentationFolder", "IGNORE_INDEX"]

IGNORE_INDEX = 255
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


class SegmentationFolder(Dataset):
    """``(image, mask)`` pairs of one split of an ADE20K / VOC-style folder.

    Args:
        root: the dataset folder holding ``images/`` and ``annotations/``.
        split: the sub-folder of both, e.g. ``training`` / ``validation`` (ADE20K) or ``train`` / ``val``.
        transform: a paired torchvision v2 transform, called as ``transform(image, mask)`` on
            ``tv_tensors.Image`` uint8 [3, H, W] and ``tv_tensors.Mask`` uint8 [H, W]; the mask comes
            back as int64 [H', W'].
        num_classes: classes of the label maps (after ``reduce_zero_label``), for the probe; None: found
            from the training masks.
        reduce_zero_label: label 0 -> 255 (ignored), ``c`` -> ``c - 1`` (ADE20K).
        limit: keep only the first ``limit`` images (sorted by name).
        max_consecutive_failures: raise after this many unreadable files in a row.
    """

    def __init__(self, root: str, *, split: str = "training", transform: Callable | None = None,
                 num_classes: int | None = None, reduce_zero_label: bool = False, limit: int | None = None,
                 max_consecutive_failures: int = 20):
        base = Path(root).expanduser()
        image_dir, mask_dir = base / "images" / split, base / "annotations" / split
        for folder in (image_dir, mask_dir):
            if not folder.is_dir():
                raise FileNotFoundError(f"segmentation folder {str(folder)!r} not found (expected "
                                        f"root/images/{split}/ and root/annotations/{split}/)")
        images = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise FileNotFoundError(f"{str(image_dir)!r} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        images = images[:limit] if limit is not None else images
        self.samples = [(p, mask_dir / f"{p.stem}.png") for p in images]
        missing = [(i, m) for i, m in self.samples if not m.is_file()]
        if missing:
            (img, mask), more = missing[0], len(missing) - 1
            raise FileNotFoundError(f"no label map for image {str(img)!r}: expected {str(mask)!r}"
                                    + (f" ({more} more images lack one)" if more else ""))
        self.num_classes, self.reduce_zero_label = num_classes, reduce_zero_label
        self.transform, self.max_consecutive_failures = transform, max_consecutive_failures
        self.consecutive_failures = 0

    def __len__(self) -> int:
        return len(self.samples)

    def _read(self, index: int) -> tuple[np.ndarray, np.ndarray] | None:
        image_path, mask_path = self.samples[index]
        path = image_path
        try:
            with Image.open(image_path) as img:
                image = np.asarray(img.convert("RGB"))  # a full decode: truncated files fail here
            path = mask_path
            with Image.open(mask_path) as img:
                mode, mask = img.mode, np.asarray(img)
        except Exception as exc:  # noqa: BLE001 - any decoder error means the file is unusable
            self.consecutive_failures += 1
            warnings.warn(f"skipping unreadable {'image' if path == image_path else 'label map'} {str(path)!r}: "
                          f"{type(exc).__name__}: {exc}", stacklevel=3)
            if self.consecutive_failures > self.max_consecutive_failures:
                raise RuntimeError(f"{self.consecutive_failures} unreadable files in a row (last: {str(path)!r}); "
                                   "is the dataset mount healthy?") from exc
            return None
        self.consecutive_failures = 0
        if mode not in ("L", "P", "I", "I;16"):
            raise ValueError(f"label map {str(mask_path)!r} has mode {mode!r}: expected one class index per "
                             "pixel (mode L or P)")
        if mask.shape != image.shape[:2]:
            raise ValueError(f"label map {str(mask_path)!r} is {mask.shape[1]}x{mask.shape[0]} (WxH) but its image "
                             f"{str(image_path)!r} is {image.shape[1]}x{image.shape[0]}")
        return image, mask

    def __getitem__(self, index: int) -> tuple[Any, torch.Tensor] | None:
        pair = self._read(index)
        if pair is None:
            return None
        image = tv_tensors.Image(torch.from_numpy(pair[0].copy()).permute(2, 0, 1))  # [3, H, W] uint8
        labels = torch.from_numpy(pair[1].astype(np.int64))
        if self.reduce_zero_label:
            labels = torch.where(labels == 0, IGNORE_INDEX, labels - 1)
            labels[labels == IGNORE_INDEX - 1] = IGNORE_INDEX  # 255 stays ignored
        mask = tv_tensors.Mask(labels.to(torch.uint8) if int(labels.max()) <= 255 else labels)
        if self.transform is not None:
            image, mask = self.transform(image, mask)
        return image, torch.as_tensor(mask).long()
