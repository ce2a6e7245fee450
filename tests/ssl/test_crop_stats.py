"""Flat and near-duplicate crop shares of a multi-crop batch."""

import pytest
import torch

from vitlab.ssl.crop_stats import crop_stats


def test_identical_blank_crops_are_flat_and_duplicates():
    stats = crop_stats(torch.full((8, 1, 12, 12), -0.8), num_images=4)
    assert stats == {"flat": 1.0, "duplicate": 1.0}


def test_random_crops_are_neither():
    torch.manual_seed(0)
    stats = crop_stats(torch.randn(16, 3, 16, 16), num_images=8)
    assert stats == {"flat": 0.0, "duplicate": 0.0}


def test_one_image_shown_twice_makes_two_duplicates_only():
    torch.manual_seed(1)
    crops = torch.randn(8, 1, 16, 16)  # crop-major: 2 crops of 4 images
    crops[3] = crops[1] + 0.01 * torch.randn(1, 16, 16)  # image 3's first crop looks like image 1's
    stats = crop_stats(crops, num_images=4)
    assert stats["duplicate"] == 2 / 8 and stats["flat"] == 0.0
    # the same look inside one image (its two crops) is not a duplicate across images
    crops = torch.randn(8, 1, 16, 16)
    crops[5] = crops[1]
    assert crop_stats(crops, num_images=4)["duplicate"] == 0.0


def test_background_crops_among_textured_ones_are_flat():
    torch.manual_seed(2)
    crops = torch.randn(8, 1, 16, 16)
    crops[:3] = -1.0  # three all-background crops
    stats = crop_stats(crops, num_images=8)
    assert stats["flat"] == 3 / 8 and stats["duplicate"] == 3 / 8


def test_crops_must_be_whole_images():
    with pytest.raises(ValueError, match="7 crops"):
        crop_stats(torch.randn(7, 1, 8, 8), num_images=2)
