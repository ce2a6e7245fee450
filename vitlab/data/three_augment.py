"""3-Augment, DeiT III's data augmentation (Touvron, Cord, Jégou 2022, "DeiT III: Revenge of the ViT", §3.1).

Each image gets exactly one of three transforms, picked with equal probability: grayscale (colour
invariance, more weight on shape), solarization (a strong colour perturbation) or a Gaussian blur (a
small change of detail). The recipe adds colour jitter and a horizontal flip around it; see
``configs/recipes/deit3_im1k.py``. facebookresearch/deit ``augment.py`` (``new_data_aug_generator``)
builds the same choice from PIL filters.
"""

from __future__ import annotations

import math

from torchvision.transforms import v2

__all__ = ["ThreeAugment"]


class ThreeAugment(v2.RandomChoice):
    """One of grayscale (3 channels out), solarization, Gaussian blur per image, uniformly at random.

    Works on PIL images and uint8 image tensors (solarization's threshold is in uint8 units); the
    random draws use torch's generator, so a seeded data loader replays them exactly.

    Args:
        solarize_threshold: pixels at or above it are inverted (deit ``augment.py``: PIL's
            ``ImageOps.solarize`` default, 128).
        blur_sigma: range of the blur's standard deviation, drawn uniformly per image (deit
            ``augment.py``: PIL radius 0.1 to 2.0; PIL's radius is the standard deviation).
    """

    def __init__(self, *, solarize_threshold: float = 128, blur_sigma: tuple[float, float] = (0.1, 2.0)):
        lo, hi = blur_sigma
        if not 0 < lo <= hi:
            raise ValueError(f"blur_sigma must be an increasing pair of positive numbers, got {blur_sigma}")
        # PIL's blur has no kernel size; a side of 2 ceil(3 sigma) + 1 holds 99.7% of the Gaussian's mass
        kernel_size = 2 * math.ceil(3 * hi) + 1
        super().__init__([
            v2.Grayscale(num_output_channels=3),
            v2.RandomSolarize(threshold=solarize_threshold, p=1.0),
            v2.GaussianBlur(kernel_size=kernel_size, sigma=(lo, hi)),
        ])
