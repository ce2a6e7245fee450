"""Multi-crop: sizes on 28x28 grayscale input, channels, normalisation, crop-major collate."""

import functools

import numpy as np
import pytest
import torch
from PIL import Image

from vitlab.ssl import MaskingGenerator, MultiCrop, collate_multicrop, sample_ibot_masks

SMALL = {"global_crops_size": 32, "local_crops_size": 16, "local_crops_number": 6, "blur_kernel_size": 3}


def gray_pil():
    return Image.fromarray(np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8), mode="L")


@pytest.mark.parametrize("make_input", [
    gray_pil,
    lambda: torch.randint(0, 256, (1, 28, 28), dtype=torch.uint8),
    lambda: torch.rand(1, 28, 28),
    lambda: Image.fromarray(np.random.default_rng(1).integers(0, 256, (28, 28, 3), dtype=np.uint8)),
], ids=["pil_L", "uint8_tensor", "float_tensor", "pil_rgb"])
def test_sizes_on_small_images(make_input):
    out = MultiCrop(**SMALL)(make_input())
    assert set(out) == {"global_crops", "local_crops"}
    assert [tuple(t.shape) for t in out["global_crops"]] == [(3, 32, 32)] * 2
    assert [tuple(t.shape) for t in out["local_crops"]] == [(3, 16, 16)] * 6
    for t in out["global_crops"] + out["local_crops"]:
        assert type(t) is torch.Tensor and t.dtype == torch.float32 and torch.isfinite(t).all()


def test_single_channel_kept_with_matching_stats():
    out = MultiCrop(**SMALL, to_rgb=False, mean=(0.286,), std=(0.353,))(gray_pil())
    assert out["global_crops"][0].shape == (1, 32, 32) and out["local_crops"][0].shape == (1, 16, 16)
    with pytest.raises(ValueError, match="channels"):
        MultiCrop(**SMALL, to_rgb=False)(gray_pil())


def test_normalisation_without_photometric_noise():
    """A constant image with every random photometric op off maps to (value - mean) / std."""
    transform = MultiCrop(**SMALL, blur_p=(0.0, 0.0, 0.0), solarize_p=0.0, color_jitter_p=0.0, grayscale_p=0.0,
                          mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    out = transform(torch.full((3, 28, 28), 204, dtype=torch.uint8))
    torch.testing.assert_close(out["global_crops"][0], torch.full((3, 32, 32), (0.8 - 0.5) / 0.25))


def test_defaults_are_dinov3():
    t = MultiCrop()
    assert t.global_crop.size == (224, 224) and t.global_crop.scale == (0.32, 1.0)
    assert t.local_crop.scale == (0.05, 0.32) and t.local_crops_number == 8
    assert t.blur_p == (1.0, 0.1, 0.5)
    assert t.solarize_p == 0.2  # on the second global crop only
    assert (t.color_jitter_p, t.grayscale_p, t.flip_p) == (0.8, 0.2, 0.5)


def _photometric_reference(t: MultiCrop, crop: torch.Tensor, blur_p: float, solarize_p: float | None) -> torch.Tensor:
    """The photometric chain as torchvision's transforms compose it (what MultiCrop used before): solarisation
    is a step of the second global crop's chain only."""
    from torchvision.transforms import v2

    ops = [v2.RandomApply([v2.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1)], p=t.color_jitter_p),
           v2.RandomGrayscale(p=t.grayscale_p),
           v2.RandomApply([v2.GaussianBlur(kernel_size=t.blur_kernel_size, sigma=t.blur_sigma)], p=blur_p)]
    if solarize_p is not None:
        ops.append(v2.RandomSolarize(threshold=128, p=solarize_p))
    return v2.Compose(ops)(crop)


@pytest.mark.parametrize("probabilities", [(1.0, 1.0, 1.0, 1.0), (1.0, 0.0, 1.0, 0.0), (0.0, 1.0, 0.0, 1.0),
                                           (1.0, 1.0, 0.5, None)])
def test_photometric_ops_are_torchvisions_transforms(probabilities):
    """Every operation applied (p = 1) or none, each crop equals torchvision's composed transforms on it
    when both draw their parameters from one seed: same kernels, same parameter samplers."""
    jitter, gray, blur, solarize = probabilities
    t = MultiCrop(**SMALL, color_jitter_p=jitter, grayscale_p=gray)
    crop = torch.randint(0, 256, (3, 16, 16), dtype=torch.uint8)
    torch.manual_seed(3)
    ref = _photometric_reference(t, crop, blur, solarize)
    torch.manual_seed(3)
    assert torch.equal(t.photometric(crop, blur, solarize), ref)


@pytest.mark.parametrize("seed", range(4))
def test_geometry_is_torchvisions_random_resized_crop_and_flip(seed):
    from torchvision.transforms import v2

    t = MultiCrop(**SMALL)
    image = torch.randint(0, 256, (1, 28, 28), dtype=torch.uint8)
    ref_ops = v2.Compose([v2.RandomResizedCrop(16, scale=(0.05, 0.32), interpolation=v2.InterpolationMode.BICUBIC,
                                               antialias=True), v2.RandomHorizontalFlip(p=0.5)])
    torch.manual_seed(seed)
    ref = ref_ops(image)
    torch.manual_seed(seed)
    assert torch.equal(t.geometry(image, t.local_crop), ref)


def composed_multicrop(t: MultiCrop, image: torch.Tensor) -> dict[str, list[torch.Tensor]]:
    """The same crops through torchvision's ``v2.Compose`` of transforms (MultiCrop's former form)."""
    from torchvision.transforms import v2

    def geometry(crop):
        return v2.Compose([v2.RandomResizedCrop(crop.size, scale=crop.scale, interpolation=v2.InterpolationMode.BICUBIC,
                                                antialias=True), v2.RandomHorizontalFlip(p=t.flip_p)])

    def chain(blur_p, solarize_p):
        return v2.Compose([lambda x: _photometric_reference(t, x, blur_p, solarize_p), v2.ToDtype(torch.float32, scale=True),
                           v2.Normalize(mean=t.mean.flatten().tolist(), std=t.std.flatten().tolist())])

    g, loc = geometry(t.global_crop), geometry(t.local_crop)
    return {"global_crops": [chain(t.blur_p[0], None)(g(image)), chain(t.blur_p[1], t.solarize_p)(g(image))],
            "local_crops": [chain(t.blur_p[2], None)(loc(image)) for _ in range(t.local_crops_number)]}


@pytest.mark.parametrize("channels", [1, 3])
def test_crops_are_bit_identical_to_the_composed_transforms(channels):
    mean, std = (0.3,) * channels, (0.2,) * channels
    t = MultiCrop(**SMALL, to_rgb=False, mean=mean, std=std)
    image = torch.randint(0, 256, (channels, 28, 28), dtype=torch.uint8)
    for seed in range(3):
        torch.manual_seed(seed)
        ref = composed_multicrop(t, image)
        torch.manual_seed(seed)
        out = t(image)
        for key in ("global_crops", "local_crops"):
            for a, b in zip(out[key], ref[key], strict=True):
                assert torch.equal(a, b)


def test_collate_is_crop_major_with_labels_and_masks():
    def fake_sample(i):
        return {"global_crops": [torch.full((3, 4, 4), 10.0 * i + c) for c in range(2)],
                "local_crops": [torch.full((3, 2, 2), 10.0 * i + c) for c in range(3)]}, i

    masker = functools.partial(sample_ibot_masks, mask_generator=MaskingGenerator((2, 2), min_num_patches=1))
    batch = collate_multicrop([fake_sample(i) for i in range(4)], masker=masker)
    assert batch["global_crops"].shape == (8, 3, 4, 4) and batch["local_crops"].shape == (12, 3, 2, 2)
    # Row c * B + b holds crop c of image b.
    assert batch["global_crops"][:, 0, 0, 0].tolist() == [0, 10, 20, 30, 1, 11, 21, 31]
    assert batch["local_crops"].unflatten(0, (3, 4))[2, 1, 0, 0, 0].item() == 12
    assert batch["labels"].tolist() == [0, 1, 2, 3]
    assert batch["masks"].shape == (8, 4)


def test_collate_real_crops_without_labels():
    transform = MultiCrop(**SMALL)
    batch = collate_multicrop([transform(gray_pil()) for _ in range(3)])
    assert batch["global_crops"].shape == (6, 3, 32, 32) and batch["local_crops"].shape == (18, 3, 16, 16)
    assert "labels" not in batch
