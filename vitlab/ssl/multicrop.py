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
from torchvision.transforms.v2 import functional as F

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "MultiCrop", "collate_multicrop"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class MultiCrop:
    """Image -> ``{"global_crops": [g1, g2], "local_crops": [l1, ..., ln]}`` of normalised tensors.

    Accepts a PIL image or a ``[C, H, W]`` tensor (uint8, or float in [0, 1]); one-channel input is
    repeated to three channels when ``to_rgb`` (needed with the 3-value ImageNet statistics), or kept
    with one channel (then pass one-value ``mean``/``std``). The photometric transforms run on uint8,
    where solarisation's threshold of 128 means what it says.

    Each crop's random parameters come from torchvision's own transforms (``RandomResizedCrop``,
    ``ColorJitter``: their ``make_params``), and the crop is made by torchvision's functional image kernels
    called directly: the same operations as ``v2.Compose`` of those transforms, without the container
    machinery around each call, which took over half the time on small images (a Fashion-MNIST batch of
    64 images x 8 crops: 0.18 s of one core through ``v2.Compose``, 0.08 s here). The crops of one size are
    normalised together. Given one random seed, the crops are bit-identical to those of the ``v2.Compose``
    pipeline (``tests/ssl/test_multicrop.py``).

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
        color_jitter_p: probability of colour jitter (brightness 0.4, contrast 0.4, saturation 0.2, hue 0.1;
            DINOv3: 0.8).
        grayscale_p: probability of converting a three-channel crop to grayscale (DINOv3: 0.2).
        to_rgb: repeat one-channel images to three channels.
    """

    def __init__(self, *, global_crops_size: int = 224, local_crops_size: int = 96, local_crops_number: int = 8,
                 global_crops_scale: tuple[float, float] = (0.32, 1.0),
                 local_crops_scale: tuple[float, float] = (0.05, 0.32),
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 blur_p: tuple[float, float, float] = (1.0, 0.1, 0.5), blur_kernel_size: int = 9,
                 blur_sigma: tuple[float, float] = (0.1, 2.0), solarize_p: float = 0.2,
                 horizontal_flips: bool = True, color_jitter_p: float = 0.8, grayscale_p: float = 0.2,
                 to_rgb: bool = True):
        self.local_crops_number = local_crops_number
        self.num_channels = len(mean)
        # Everything downstream sees a uint8 [C, H, W] tensor, whatever came in.
        self.to_image = v2.Compose([v2.ToImage(), v2.ToDtype(torch.uint8, scale=True)]
                                   + ([v2.RGB()] if to_rgb else []))
        # Parameter samplers (their make_params); the kernels run below.
        self.global_crop = v2.RandomResizedCrop(global_crops_size, scale=global_crops_scale)
        self.local_crop = v2.RandomResizedCrop(local_crops_size, scale=local_crops_scale)
        self.jitter = v2.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1)
        self.flip_p = 0.5 if horizontal_flips else 0.0
        self.color_jitter_p, self.grayscale_p = color_jitter_p, grayscale_p
        self.blur_p, self.blur_kernel_size, self.blur_sigma = tuple(blur_p), blur_kernel_size, tuple(blur_sigma)
        self.solarize_p = solarize_p
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)

    def __call__(self, image: Any) -> dict[str, list[torch.Tensor]]:
        """Args: image, PIL or ``[C, H, W]``. Returns ``global_crops`` (2 x ``[C, Hg, Wg]``) and
        ``local_crops`` (n x ``[C, Hl, Wl]``), float32 tensors."""
        image = self.to_image(image).as_subclass(torch.Tensor)
        if image.shape[0] != self.num_channels:
            raise ValueError(f"image has {image.shape[0]} channels but mean/std have {self.num_channels} "
                             f"values; set to_rgb or pass matching statistics")
        global_crops = [
            self.photometric(self.geometry(image, self.global_crop), self.blur_p[0]),
            self.photometric(self.geometry(image, self.global_crop), self.blur_p[1], self.solarize_p),
        ]
        local_crops = [self.photometric(self.geometry(image, self.local_crop), self.blur_p[2])
                       for _ in range(self.local_crops_number)]
        return {"global_crops": self.normalize(global_crops), "local_crops": self.normalize(local_crops)}

    def geometry(self, image: torch.Tensor, crop: v2.RandomResizedCrop) -> torch.Tensor:
        """A random resized crop (bicubic, antialiased), flipped horizontally with ``flip_p``."""
        p = crop.make_params([image])
        out = F.resized_crop_image(image, p["top"], p["left"], p["height"], p["width"], size=list(crop.size),
                                   interpolation=v2.InterpolationMode.BICUBIC, antialias=True)
        return F.horizontal_flip_image(out) if torch.rand(1).item() < self.flip_p else out

    def photometric(self, crop: torch.Tensor, blur_p: float, solarize_p: float | None = None) -> torch.Tensor:
        """Colour jitter (its four operations in a random order), grayscale, Gaussian blur, and solarisation
        when ``solarize_p`` is given (the second global crop only: no random draw for the others)."""
        if torch.rand(1).item() < self.color_jitter_p:
            p = self.jitter.make_params([])
            adjust = (lambda x: F.adjust_brightness_image(x, p["brightness_factor"]),
                      lambda x: F.adjust_contrast_image(x, p["contrast_factor"]),
                      lambda x: F.adjust_saturation_image(x, p["saturation_factor"]),
                      lambda x: F.adjust_hue_image(x, p["hue_factor"]))
            for i in p["fn_idx"].tolist():
                crop = adjust[i](crop)
        if torch.rand(1).item() < self.grayscale_p and crop.shape[0] == 3:
            crop = F.rgb_to_grayscale_image(crop, num_output_channels=3)
        if torch.rand(1).item() < blur_p:
            sigma = torch.empty(1).uniform_(*self.blur_sigma).item()
            crop = F.gaussian_blur_image(crop, [self.blur_kernel_size] * 2, [sigma, sigma])
        if solarize_p is not None and torch.rand(1).item() < solarize_p:
            crop = F.solarize_image(crop, 128)
        return crop

    def normalize(self, crops: list[torch.Tensor]) -> list[torch.Tensor]:
        """uint8 crops of one size -> float32 ``(x / 255 - mean) / std`` (as ``v2.ToDtype`` and ``v2.Normalize``
        compute it), for all of them at once."""
        if not crops:
            return []
        return list(torch.stack(crops).float().mul_(1.0 / 255).sub_(self.mean).div_(self.std).unbind(0))


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
