"""Fashion-MNIST (Xiao et al. 2017, MIT licence) read straight from its four idx files.

Accepted layouts (files gzipped or not): the Debian ``dataset-fashion-mnist`` folder
``/usr/share/datasets/fashion-mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz`` and
torchvision's ``<root>/FashionMNIST/raw/``. Images are ``uint8`` tensors ``[1, 28, 28]``; a transform
(``torchvision.transforms.v2``) may repeat them to 3 channels (``v2.RGB()``) or keep one channel.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors

__all__ = ["FashionMNIST", "DEFAULT_ROOT", "read_idx"]

DEFAULT_ROOT = "/usr/share/datasets/fashion-mnist"
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
_PREFIX = {"train": "train", "test": "t10k"}
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
               0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def read_idx(path: Path) -> np.ndarray:
    """Parse an idx file (LeCun's MNIST format), gzipped or not."""
    raw = (gzip.open if path.suffix == ".gz" else open)(path, "rb").read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{str(path)!r} is not an idx file (bad magic number)")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=_IDX_DTYPES[raw[2]], offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{str(path)!r} is truncated: header says {shape}, found {data.size} values")
    return data.reshape(shape)


def _find(root: Path, stem: str) -> Path:
    for folder in (root, root / "FashionMNIST" / "raw", root / "raw"):
        for name in (f"{stem}.gz", stem):
            if (folder / name).is_file():
                return folder / name
    raise FileNotFoundError(
        f"Fashion-MNIST file {stem}[.gz] not found under {str(root)!r} (looked in it, FashionMNIST/raw/ and raw/); "
        "install the Debian package dataset-fashion-mnist or point data.*.root at a torchvision download"
    )


class FashionMNIST(Dataset):
    """Fashion-MNIST split as (image ``uint8 [1, 28, 28]``, label) pairs.

    Args:
        root: folder holding the idx files (see module docstring).
        split: ``train`` (60k) or ``test`` (10k).
        transform: applied to the image (a ``tv_tensors.Image``).
        start: skip the first ``start`` samples (with ``limit``: a held-out slice, e.g. a
            validation set carved from ``train``: ``start=50000, limit=10000``).
        limit: keep only ``limit`` samples from ``start`` (quick runs, tests).
    """

    classes = CLASSES

    def __init__(self, root: str = DEFAULT_ROOT, *, split: str = "train", transform: Callable | None = None,
                 start: int = 0, limit: int | None = None):
        if split not in _PREFIX:
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        root_path = Path(root).expanduser()
        if not root_path.is_dir():
            raise FileNotFoundError(f"Fashion-MNIST folder not found: {str(root_path)!r}")
        prefix = _PREFIX[split]
        images = read_idx(_find(root_path, f"{prefix}-images-idx3-ubyte"))
        labels = read_idx(_find(root_path, f"{prefix}-labels-idx1-ubyte"))
        if len(images) != len(labels):
            raise ValueError(f"{str(root_path)!r}: {len(images)} images but {len(labels)} labels in split {split!r}")
        if not 0 <= start < len(labels):
            raise ValueError(f"start={start} is outside split {split!r} of {len(labels)} samples")
        stop = len(labels) if limit is None else start + limit
        images, labels = images[start:stop], labels[start:stop]
        self.images = torch.from_numpy(images.copy()).unsqueeze(1)  # [N, 1, 28, 28] uint8
        self.labels = torch.from_numpy(labels.astype(np.int64))
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image = tv_tensors.Image(self.images[index])
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.labels[index])
