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
    transform = MultiCrop(**SMALL, blur_p=(0.0, 0.0, 0.0), solarize_p=0.0, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    for t in transform.global_transform_1.transforms[0].transforms:  # colour jitter and grayscale off
        t.p = 0.0
    out = transform(torch.full((3, 28, 28), 204, dtype=torch.uint8))
    torch.testing.assert_close(out["global_crops"][0], torch.full((3, 32, 32), (0.8 - 0.5) / 0.25))


def test_defaults_are_dinov3():
    t = MultiCrop()
    crop = t.global_geometry.transforms[0]
    assert crop.size == (224, 224) and crop.scale == (0.32, 1.0)
    assert t.local_geometry.transforms[0].scale == (0.05, 0.32) and t.local_crops_number == 8
    blur_p = [c.transforms[1].p for c in (t.global_transform_1, t.global_transform_2, t.local_transform)]
    assert blur_p == [1.0, 0.1, 0.5]
    assert t.global_transform_2.transforms[2].p == 0.2  # solarisation on the second global crop only


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
