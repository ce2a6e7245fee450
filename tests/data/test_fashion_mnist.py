import gzip
import shutil
from pathlib import Path

import pytest
import torch

from vitlab.data import DEFAULT_ROOT, FashionMNIST, read_idx

needs_data = pytest.mark.skipif(not Path(DEFAULT_ROOT).is_dir(), reason="dataset-fashion-mnist not installed")


@needs_data
def test_reads_debian_layout():
    ds = FashionMNIST(split="test", limit=10)
    image, label = ds[3]
    assert len(ds) == 10 and image.shape == (1, 28, 28) and image.dtype == torch.uint8 and 0 <= label < 10


@needs_data
def test_reads_torchvision_layout_uncompressed(tmp_path):
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        with gzip.open(Path(DEFAULT_ROOT) / f"{name}.gz") as src, open(raw / name, "wb") as dst:
            shutil.copyfileobj(src, dst)
    a, b = FashionMNIST(tmp_path, split="test", limit=5), FashionMNIST(split="test", limit=5)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)


def test_missing_and_empty_folders_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="does-not-exist"):
        FashionMNIST(tmp_path / "does-not-exist")
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        FashionMNIST(tmp_path)


def test_truncated_idx_file(tmp_path):
    bad = tmp_path / "x-idx1-ubyte"
    bad.write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 9, 1, 2]))  # header says 9 labels, holds 2
    with pytest.raises(ValueError, match="truncated"):
        read_idx(bad)


@needs_data
def test_start_carves_a_held_out_slice():
    full = FashionMNIST(split="test", limit=30)
    part = FashionMNIST(split="test", start=20, limit=10)
    assert torch.equal(part.images, full.images[20:30]) and torch.equal(part.labels, full.labels[20:30])
    assert len(FashionMNIST(split="test", start=9990)) == 10
    with pytest.raises(ValueError, match="start=10000 is outside split 'test' of 10000 samples"):
        FashionMNIST(split="test", start=10000)
