"""Transform helpers whose arguments are YAML-friendly; the transforms themselves are torchvision v2.

``L(compose)(transforms=[L(v2.RandomCrop)(size=28, padding=2), L(normalize)(mean=..., std=...)])``
"""

from __future__ import annotations

from typing import Sequence

import torch
from torchvision.transforms import v2

__all__ = ["compose", "normalize"]


def compose(transforms: Sequence) -> v2.Compose:
    """``v2.Compose`` over a plain list (a config list arrives as a ``ListConfig``, slow to index)."""
    return v2.Compose(list(transforms))


def normalize(mean: Sequence[float], std: Sequence[float]) -> v2.Compose:
    """Any image (PIL, uint8 tensor) -> float32 in [0, 1] -> ``(x - mean) / std``."""
    return v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))])
