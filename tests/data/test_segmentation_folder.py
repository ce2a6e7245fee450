"""ADE20K / VOC-style segmentation folders: pairs, errors naming the file, bad files skipped, paired transforms."""

import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from vitlab.data import SegmentationFolder, build_loader, collate_skip_none


def make_folder(root, n=3, split="training", size=(8, 6)):
    (root / "images" / split).mkdir(parents=True)
    (root / "annotations" / split).mkdir(parents=True)
    for i in range(n):
        w, h = size
        pixels = np.zeros((h, w, 3), np.uint8)
        pixels[:, : w // 2, 0] = 200  # left half red
        Image.fromarray(pixels).save(root / "images" / split / f"img{i}.png")
        labels = np.zeros((h, w), np.uint8)
        labels[:, : w // 2] = i + 1
        labels[0, 0] = 255
        Image.fromarray(labels, mode="L").save(root / "annotations" / split / f"img{i}.png")
    return root


def test_pairs_and_reduce_zero_label(tmp_path):
    ds = SegmentationFolder(make_folder(tmp_path), split="training")
    image, mask = ds[1]
    assert image.shape == (3, 6, 8) and mask.shape == (6, 8) and mask.dtype == torch.long
    assert mask[1, 0] == 2 and mask[1, 7] == 0 and mask[0, 0] == 255
    reduced = SegmentationFolder(tmp_path, split="training", reduce_zero_label=True)[1][1]
    assert reduced[1, 0] == 1 and reduced[1, 7] == 255 and reduced[0, 0] == 255


def test_missing_folder_and_missing_mask_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="validation"):
        SegmentationFolder(make_folder(tmp_path), split="validation")
    (tmp_path / "annotations" / "training" / "img2.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"img2\.png"):
        SegmentationFolder(tmp_path, split="training")


def test_mis_sized_mask_named(tmp_path):
    make_folder(tmp_path)
    Image.fromarray(np.zeros((5, 5), np.uint8), mode="L").save(tmp_path / "annotations" / "training" / "img1.png")
    ds = SegmentationFolder(tmp_path, split="training")
    ds[0]
    with pytest.raises(ValueError, match=r"annotations/training/img1\.png.*5x5.*8x6"):
        ds[1]


def test_unreadable_image_skipped_with_a_warning(tmp_path):
    make_folder(tmp_path)
    (tmp_path / "images" / "training" / "img1.png").write_bytes(b"not an image")
    ds = SegmentationFolder(tmp_path, split="training")
    with pytest.warns(UserWarning, match=r"img1\.png"):
        assert ds[1] is None
    loader, sampler = build_loader(ds, batch_size=3, seed=0, shuffle=False, drop_last=False,
                                   collate_fn=collate_skip_none)
    sampler.set_epoch(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        (images, masks), = list(loader)
    assert images.shape[0] == masks.shape[0] == 2


def test_paired_transforms_keep_image_and_mask_aligned(tmp_path):
    make_folder(tmp_path)
    flip = SegmentationFolder(tmp_path, split="training", transform=v2.RandomHorizontalFlip(p=1.0))
    image, mask = flip[0]
    assert (image[0, :, -4:] == 200).all() and (image[0, :, :4] == 0).all()  # red moved right
    assert (mask[1:, -4:] == 1).all() and (mask[:, :4] == 0).all() and mask[0, -1] == 255
    resized = SegmentationFolder(tmp_path, split="training", transform=v2.Resize((12, 16)))[0]
    assert resized[0].shape == (3, 12, 16) and set(resized[1].unique().tolist()) <= {0, 1, 255}  # nearest for masks
