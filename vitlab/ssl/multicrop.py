"""Multi-crop augmentation (Caron et al. 2020, "Unsupervised Learning of Visual Features by
Contrasting Cluster Assignments", SwAV) with the photometric recipe of BYOL/DINO (Grill et al. 2020;
Caron et al. 2021) and the crop scales and sizes of DINOv3 (Simeoni et al. 2025, "DINOv3").

Two large "global" crops go to teacher and student, several small "local" crops to the student only,
so the student learns to match the whole image from a part of it.

Gaussian blur: the recipe blurs global crop 1 always, global crop 2 with p=0.1 and local crops with
p=0.5, and those are the defaults here. DINOv2/DINOv3's ``GaussianBlur`` passes ``1 - p`` to
``RandomApply``, so their released models were trained with p=0.0 / 0.9 / 0.5 instead
(facebookresearch/dinov3 issue #286); pass ``blur_p=(0.0, 0.9, 0.5)`` to reproduce that.

Axis legend: B images, C channels, n local crops per image, Hg/Wg and Hl/Wl global and local sizes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torchvision.transforms import v2

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "MultiCrop", "collate_multicrop"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class MultiCrop:
    """Image -> ``{"global_crops": [g1, g2], "local_crops": [l1, ..., ln]}`` of normalised tensors.

    Accepts a PIL image or a ``[C, H, W]`` tensor (uint8, or float in [0, 1]); one-channel input is
    repeated to three channels when ``to_rgb`` (needed with the 3-value ImageNet statistics), or kept
    with one channel (then pass one-value ``mean``/``std``). The photometric transforms run on uint8,
    where solarisation's threshold of 128 means what it says.

    Args:
        global_crops_size: side of the global crops (DINOv3: 224; e.g. 32 for 28px Fashion-MNIST).
        local_crops_size: side of the local crops (DINOv3: 96; e.g. 16).
        local_crops_number: local crops per image (DINOv3: 8).
        global_crops_scale: area range of the global crops (DINOv3: (0.32, 1.0)).
        local_crops_scale: area range of the local crops (DINOv3: (0.05, 0.32)).
        mean: normalisation mean, one value per output channel.
        std: normalisation std.
        blur_p: blur probabilities for (global crop 1, global crop 2, local crops).
        blur_kernel_size: Gaussian kernel side (DINOv3: 9 at 224px; smaller suits tiny images).
        blur_sigma: sigma range (DINOv3: (0.1, 2.0)).
        solarize_p: solarisation probability on global crop 2 (DINOv3: 0.2).
        horizontal_flips: random horizontal flip with p=0.5 on every crop.
        to_rgb: repeat one-channel images to three channels.
    """

    def __init__(self, *, global_crops_size: int = 224, local_crops_size: int = 96, local_crops_number: int = 8,
                 global_crops_scale: tuple[float, float] = (0.32, 1.0),
                 local_crops_scale: tuple[float, float] = (0.05, 0.32),
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 blur_p: tuple[float, float, float] = (1.0, 0.1, 0.5), blur_kernel_size: int = 9,
                 blur_sigma: tuple[float, float] = (0.1, 2.0), solarize_p: float = 0.2,
                 horizontal_flips: bool = True, to_rgb: bool = True):
        self.local_crops_number = local_crops_number
        self.num_channels = len(mean)
        flip = v2.RandomHorizontalFlip(p=0.5 if horizontal_flips else 0.0)
        bicubic = v2.InterpolationMode.BICUBIC
        # Everything downstream sees a uint8 tv_tensors.Image, whatever came in.
        self.to_image = v2.Compose([v2.ToImage(), v2.ToDtype(torch.uint8, scale=True)]
                                   + ([v2.RGB()] if to_rgb else []))
        self.global_geometry = v2.Compose([
            v2.RandomResizedCrop(global_crops_size, scale=global_crops_scale, interpolation=bicubic, antialias=True),
            flip,
        ])
        self.local_geometry = v2.Compose([
            v2.RandomResizedCrop(local_crops_size, scale=local_crops_scale, interpolation=bicubic, antialias=True),
            flip,
        ])
        color = v2.Compose([
            v2.RandomApply([v2.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1)], p=0.8),
            v2.RandomGrayscale(p=0.2),
        ])

        def blur(p: float) -> v2.Transform:
            return v2.RandomApply([v2.GaussianBlur(kernel_size=blur_kernel_size, sigma=blur_sigma)], p=p)

        normalize = v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean=list(mean), std=list(std))])
        self.global_transform_1 = v2.Compose([color, blur(blur_p[0]), normalize])
        self.global_transform_2 = v2.Compose([color, blur(blur_p[1]), v2.RandomSolarize(threshold=128, p=solarize_p),
                                              normalize])
        self.local_transform = v2.Compose([color, blur(blur_p[2]), normalize])

    def __call__(self, image: Any) -> dict[str, list[torch.Tensor]]:
        """Args: image, PIL or ``[C, H, W]``. Returns ``global_crops`` (2 x ``[C, Hg, Wg]``) and
        ``local_crops`` (n x ``[C, Hl, Wl]``), float32 tensors."""
        image = self.to_image(image)
        if image.shape[0] != self.num_channels:
            raise ValueError(f"image has {image.shape[0]} channels but mean/std have {self.num_channels} "
                             f"values; set to_rgb or pass matching statistics")
        global_crops = [
            self.global_transform_1(self.global_geometry(image)).as_subclass(torch.Tensor),
            self.global_transform_2(self.global_geometry(image)).as_subclass(torch.Tensor),
        ]
        local_crops = [self.local_transform(self.local_geometry(image)).as_subclass(torch.Tensor)
                       for _ in range(self.local_crops_number)]
        return {"global_crops": global_crops, "local_crops": local_crops}


def collate_multicrop(samples: Sequence[Any],
                      masker: Callable[[int], dict[str, torch.Tensor]] | None = None) -> dict[str, torch.Tensor]:
    """Stacks :class:`MultiCrop` outputs crop-major, as DINOv3's collate does.

    Crop-major means rows ``[c * B, (c + 1) * B)`` hold crop ``c`` of every image, so
    ``global_crops.unflatten(0, (2, B))`` gives ``[2, B, C, Hg, Wg]``.

    Args:
        samples: B items, each a MultiCrop dict or a ``(dict, label)`` pair (a torchvision dataset
            with ``transform=MultiCrop(...)``).
        masker: optional ``n_images -> dict`` for iBOT masks over the global crops, e.g.
            ``functools.partial(sample_ibot_masks, mask_generator=MaskingGenerator((4, 4)))``; its
            entries are added to the batch.

    Returns:
        ``global_crops`` ``[2B, C, Hg, Wg]``, ``local_crops`` ``[nB, C, Hl, Wl]`` (absent when n = 0),
        ``labels`` ``[B]`` when the samples carry labels, plus the masker's entries.
    """
    has_labels = isinstance(samples[0], (tuple, list))
    crops = [s[0] for s in samples] if has_labels else list(samples)
    batch: dict[str, torch.Tensor] = {}
    for key in ("global_crops", "local_crops"):
        n_crops = len(crops[0][key])
        if n_crops:
            batch[key] = torch.stack([c[key][i] for i in range(n_crops) for c in crops])
    if has_labels:
        batch["labels"] = torch.as_tensor([s[1] for s in samples])
    if masker is not None:
        batch.update(masker(batch["global_crops"].shape[0]))
    return batch
