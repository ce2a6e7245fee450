"""Fashion-MNIST scenes: a real-image dense-prediction task that needs no download.

Each scene pastes 2-4 Fashion-MNIST items (Xiao et al. 2017) on a black square canvas, and labels
every pixel with the class of the item it shows. It exercises the dense features a segmentation
linear probe reads (DINOv3, Siméoni et al. 2025, leads with ADE20K linear-probe mIoU) and, at
112x112 with patch 4, gives a backbone 784 patch tokens, where hybrid (Hyena 2D) blocks pay off.

The generator, for scene ``index`` of a dataset built with ``seed``:

1. ``rng = numpy.random.default_rng([seed, index])``: a scene depends on (seed, index) only, not on
   the order scenes are read in, the worker or the process.
2. ``n`` items, uniform in ``[min_items, max_items]``; for each, in order: a source image drawn
   uniformly from the Fashion-MNIST ``split`` (``train`` or ``test``: train scenes never show a
   test item), a side ``round(28 * s)`` with ``s`` uniform in ``item_scale`` (bilinear resize), and a
   top-left corner uniform over the positions that keep the item inside the canvas.
3. Painting, later items on top: an item's pixels brighter than ``threshold`` (uint8) are opaque and
   replace both the canvas pixel and its label (the item's class + 1); its fainter pixels are
   transparent and change nothing. So the label map is exactly the pasted pixels: label 0
   (background) shows 0 intensity, and a labelled pixel shows its item's intensity.

11 classes: 0 background, ``c + 1`` for Fashion-MNIST class ``c`` (:data:`SCENE_CLASSES`).

Samples: with ``masks=True`` (segmentation), ``(image, mask)``: the transform is called on the pair
``(tv_tensors.Image uint8 [1, S, S], tv_tensors.Mask uint8 [S, S])`` (a torchvision v2 transform
moves both alike: a flip flips both, a resize uses nearest for the mask), and the mask comes back as
``int64 [S', S']``. With ``masks=False`` (pretraining, e.g. with :class:`vitlab.ssl.MultiCrop`, and
the k-NN monitor), ``(transform(image), label)`` as :class:`FashionMNIST` gives, ``label`` being the
Fashion-MNIST class (0-9) of the item with the most visible pixels (ties: the item on top).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from torchvision import tv_tensors

from vitlab.data.fashion_mnist import CLASSES, DEFAULT_ROOT, FashionMNIST

__all__ = ["FashionMNISTScenes", "SCENE_CLASSES"]

SCENE_CLASSES = ("background",) + CLASSES


@lru_cache(maxsize=4)
def _items(root: str, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The Fashion-MNIST split's images [M, 28, 28] uint8 and labels [M], read once per process (train and val
    scenes, probe and pretraining datasets share them)."""
    source = FashionMNIST(root, split=split)
    return source.images[:, 0], source.labels


class FashionMNISTScenes(Dataset):
    """Scenes of pasted Fashion-MNIST items with per-pixel labels (see the module docstring).

    Args:
        root: the Fashion-MNIST folder (as :class:`FashionMNIST`).
        split: ``train`` or ``test``: which Fashion-MNIST items the scenes show.
        num_scenes: the dataset's length.
        size: canvas side S (e.g. 112, or 56); at least the largest item.
        min_items, max_items: items per scene, inclusive range.
        item_scale: range of the item side as a multiple of 28 px.
        threshold: item pixels above this (uint8) are opaque and labelled; the others are transparent.
        seed: the scene generator's seed; two datasets with the same arguments hold the same scenes.
        masks: return ``(image, mask)`` for segmentation, or ``(image, label)`` for pretraining.
        transform: a paired transform ``(image, mask) -> (image, mask)`` with ``masks``, else
            ``image -> image``.
    """

    num_classes = len(SCENE_CLASSES)
    classes = SCENE_CLASSES

    def __init__(self, root: str = DEFAULT_ROOT, *, split: str = "train", num_scenes: int = 10000, size: int = 112,
                 min_items: int = 2, max_items: int = 4, item_scale: Sequence[float] = (1.0, 1.0),
                 threshold: int = 16, seed: int = 0, masks: bool = True, transform: Callable | None = None):
        lo, hi = (float(s) for s in item_scale)
        if not 0 < lo <= hi:
            raise ValueError(f"item_scale must be (low, high) with 0 < low <= high, got {tuple(item_scale)}")
        if round(28 * hi) > size:
            raise ValueError(f"size={size} is smaller than the largest item ({round(28 * hi)} px at item_scale={hi})")
        if not 1 <= min_items <= max_items:
            raise ValueError(f"need 1 <= min_items <= max_items, got min_items={min_items}, max_items={max_items}")
        if num_scenes < 1:
            raise ValueError(f"num_scenes must be positive, got {num_scenes}")
        if not 0 <= threshold < 255:
            raise ValueError(f"threshold must be in [0, 255), got {threshold}")
        self.items, self.item_labels = _items(str(root), split)  # [M, 28, 28] uint8, [M]
        self.split, self.num_scenes, self.size = split, num_scenes, size
        self.min_items, self.max_items, self.item_scale = min_items, max_items, (lo, hi)
        self.threshold, self.seed, self.masks, self.transform = threshold, seed, masks, transform

    def __len__(self) -> int:
        return self.num_scenes

    def scene(self, index: int) -> tuple[torch.Tensor, torch.Tensor, list[dict[str, int]]]:
        """Scene ``index`` untransformed: image uint8 [S, S], mask uint8 [S, S] and the pasted items
        (``source`` index, ``label`` 0-9, ``top``, ``left``, ``side``), bottom first."""
        if not 0 <= index < self.num_scenes:
            raise IndexError(f"scene {index} out of range for {self.num_scenes} scenes")
        rng = np.random.default_rng([self.seed, index])
        image = torch.zeros(self.size, self.size, dtype=torch.uint8)
        mask = torch.zeros(self.size, self.size, dtype=torch.uint8)
        placed = []
        for _ in range(int(rng.integers(self.min_items, self.max_items + 1))):
            source = int(rng.integers(len(self.items)))
            side = round(28 * float(rng.uniform(*self.item_scale)))
            top, left = (int(v) for v in rng.integers(0, self.size - side + 1, size=2))
            item = self.items[source]
            if side != 28:
                item = F.interpolate(item[None, None].float(), size=(side, side), mode="bilinear", antialias=True,
                                     align_corners=False)[0, 0].round().clamp(0, 255).to(torch.uint8)
            opaque = item > self.threshold
            label = int(self.item_labels[source])
            image[top:top + side, left:left + side][opaque] = item[opaque]
            mask[top:top + side, left:left + side][opaque] = label + 1
            placed.append({"source": source, "label": label, "top": top, "left": left, "side": side})
        return image, mask, placed

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        image, mask, placed = self.scene(index)
        image = tv_tensors.Image(image[None])
        if not self.masks:
            counts = torch.bincount(mask.flatten().long(), minlength=self.num_classes)[1:]
            # the class with most visible pixels; ties: the class of the item painted last
            order = [p["label"] for p in reversed(placed)]
            label = max(order, key=lambda c: int(counts[c]))
            return (self.transform(image) if self.transform is not None else image), label
        mask = tv_tensors.Mask(mask)
        if self.transform is not None:
            image, mask = self.transform(image, mask)
        return image, torch.as_tensor(mask).long()
