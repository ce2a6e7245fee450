"""CIFAR-10/100 and STL-10 through torchvision, with a user-given root and the common ``limit`` argument."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from torch.utils.data import Dataset, Subset
from torchvision import datasets

__all__ = ["cifar10", "cifar100", "stl10"]


def _check_root(root: str, download: bool) -> str:
    path = Path(root).expanduser()
    if not download and not path.is_dir():
        raise FileNotFoundError(f"dataset folder not found: {str(path)!r} (pass download=True to fetch it)")
    return str(path)


def _check_split(split: str, allowed: tuple[str, ...]) -> None:
    if split not in allowed:
        raise ValueError(f"split must be one of {allowed}, got {split!r}")


def _limit(ds: Dataset, limit: int | None) -> Dataset:
    return Subset(ds, range(min(limit, len(ds)))) if limit is not None else ds


def cifar10(root: str, *, split: str = "train", transform: Callable | None = None, download: bool = False,
            limit: int | None = None) -> Dataset:
    """CIFAR-10 ``train`` / ``test`` split (32x32 RGB PIL images)."""
    _check_split(split, ("train", "test"))
    ds = datasets.CIFAR10(_check_root(root, download), train=split == "train", transform=transform, download=download)
    return _limit(ds, limit)


def cifar100(root: str, *, split: str = "train", transform: Callable | None = None, download: bool = False,
             limit: int | None = None) -> Dataset:
    """CIFAR-100 ``train`` / ``test`` split (fine labels)."""
    _check_split(split, ("train", "test"))
    ds = datasets.CIFAR100(_check_root(root, download), train=split == "train", transform=transform, download=download)
    return _limit(ds, limit)


def stl10(root: str, *, split: str = "train", transform: Callable | None = None, download: bool = False,
          limit: int | None = None) -> Dataset:
    """STL-10 ``train`` / ``test`` / ``unlabeled`` / ``train+unlabeled`` split (96x96)."""
    _check_split(split, ("train", "test", "unlabeled", "train+unlabeled"))
    ds = datasets.STL10(_check_root(root, download), split=split, transform=transform, download=download)
    return _limit(ds, limit)
