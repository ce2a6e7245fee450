"""ImageFolder trees (ImageNet layout ``root/<class>/<image>``) that survive bad files.

A corrupt, truncated or zero-byte file is skipped with a warning naming it: ``__getitem__`` returns
``None`` and :func:`vitlab.data.loader.collate_skip_none` drops it, so no other sample is duplicated to
fill its place (the batch is one smaller). More than ``max_consecutive_failures`` bad files in a row
in one process means something is systemically wrong (a dead mount) and raises.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Callable

from PIL import Image
from torch.utils.data import Dataset
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

__all__ = ["ImageFolder"]


class ImageFolder(Dataset):
    """Images under ``root/<class>/`` with labels from sorted class-folder names.

    Args:
        root: the split folder (e.g. ``/data/imagenet/train``).
        transform: applied to the RGB PIL image.
        limit: keep only the first ``limit`` files (sorted), for quick runs.
        max_consecutive_failures: raise after this many unreadable files in a row.
    """

    def __init__(self, root: str, *, transform: Callable | None = None, limit: int | None = None,
                 max_consecutive_failures: int = 20):
        path = Path(root).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(f"image folder not found: {str(path)!r}")
        try:
            self.classes, self.class_to_idx = find_classes(str(path))
            samples = make_dataset(str(path), self.class_to_idx, extensions=IMG_EXTENSIONS, allow_empty=True)
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"image folder {str(path)!r} has no class sub-folders ({exc})") from None
        if not samples:
            raise FileNotFoundError(f"image folder {str(path)!r} holds no images with extensions {IMG_EXTENSIONS}")
        self.samples = samples[:limit] if limit is not None else samples
        self.targets = [t for _, t in self.samples]
        self.transform, self.max_consecutive_failures = transform, max_consecutive_failures
        self.consecutive_failures = 0

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, int] | None:
        path, target = self.samples[index]
        try:
            with Image.open(path) as img:
                image = img.convert("RGB")  # forces a full decode: truncated files fail here
        except Exception as exc:  # noqa: BLE001 - any decoder error means the file is unusable
            self.consecutive_failures += 1
            warnings.warn(f"skipping unreadable image {path!r}: {type(exc).__name__}: {exc}", stacklevel=2)
            if self.consecutive_failures > self.max_consecutive_failures:
                raise RuntimeError(
                    f"{self.consecutive_failures} unreadable images in a row (last: {path!r}); "
                    "is the dataset mount healthy?"
                ) from exc
            return None
        self.consecutive_failures = 0
        if self.transform is not None:
            image = self.transform(image)
        return image, target
