"""Transform helpers whose arguments are YAML-friendly; the transforms themselves are torchvision v2.

``L(compose)(transforms=[L(v2.RandomCrop)(size=28, padding=2), L(normalize)(mean=..., std=...)])``

``SimpleRandomCrop`` is DeiT III's crop (Touvron, Cord, Jégou 2022, "DeiT III: Revenge of the ViT", §3.1).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchvision.transforms import v2

__all__ = ["SimpleRandomCrop", "compose", "normalize"]


def compose(transforms: Sequence) -> v2.Compose:
    """``v2.Compose`` over a plain list (a config list arrives as a ``ListConfig``, slow to index)."""
    return v2.Compose(list(transforms))


def normalize(mean: Sequence[float], std: Sequence[float]) -> v2.Compose:
    """Any image (PIL, uint8 tensor) -> float32 in [0, 1] -> ``(x - mean) / std``."""
    return v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))])


class SimpleRandomCrop(v2.Compose):
    """Simple Random Crop (SRC, DeiT III): resize the shorter side to ``size``, pad every side by
    ``padding`` pixels with reflection, then crop a random ``size`` x ``size`` square.

    Unlike ``RandomResizedCrop`` it keeps the aspect ratio and the object scale of the test-time
    resize, so the crop moves mostly along the longer side. facebookresearch/deit ``augment.py``
    (``--src``): ``Resize(size, bicubic)``, ``RandomCrop(size, padding=4, padding_mode="reflect")``.

    Args:
        size: side of the square crop (and of the resized shorter side).
        padding: reflect padding on each side, in pixels (DeiT III: 4).
        interpolation: resize interpolation, a torchvision mode name (DeiT III: bicubic).
    """

    def __init__(self, *, size: int, padding: int = 4, interpolation: str = "bicubic"):
        super().__init__([
            v2.Resize(size, interpolation=v2.InterpolationMode(interpolation), antialias=True),
            v2.RandomCrop(size, padding=padding, padding_mode="reflect"),
        ])
