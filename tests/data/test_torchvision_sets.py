"""CIFAR / STL-10 wrappers: the errors a user meets before any file is read (no download here)."""

import pytest

from vitlab.data import cifar10, cifar100, stl10


@pytest.mark.parametrize("make", [cifar10, cifar100, stl10])
def test_missing_root_is_named(tmp_path, make):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        make(str(tmp_path / "nowhere"))


@pytest.mark.parametrize("make", [cifar10, cifar100, stl10])
def test_bad_split_is_named(tmp_path, make):
    with pytest.raises(ValueError, match="'val'"):
        make(str(tmp_path), split="val")


def test_present_but_corrupt_folder_is_torchvisions_error(tmp_path):
    (tmp_path / "cifar-10-batches-py").mkdir()
    with pytest.raises(RuntimeError, match="not found or corrupted"):
        cifar10(str(tmp_path))
