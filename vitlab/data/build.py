"""Datasets from the ``data`` config: a dataset spec plus a transform spec, joined here.

    data = dict(
        train=L(FashionMNIST)(split="train"), val=L(FashionMNIST)(split="test"),
        train_transform=L(compose)(transforms=[...]), eval_transform=L(normalize)(mean=..., std=...),
        batch_size=256,   # global, over all ranks
        num_workers=2,
    )

Dataset classes take ``transform=`` (the transform spec is instantiated and injected), so the same
dataset spec serves training (augmented) and feature extraction (``eval_transform``).
"""

from __future__ import annotations

from typing import Any

from torch.utils.data import Dataset

from vitlab.config import instantiate

__all__ = ["build_dataset"]


def build_dataset(data_cfg: Any, split: str, *, train: bool | None = None) -> Dataset:
    """``data_cfg[split]`` with ``train_transform`` (``train=True``) or ``eval_transform`` injected.

    Args:
        data_cfg: the ``data`` config.
        split: key of the dataset spec (``train`` or ``val``).
        train: which transform; defaults to ``split == "train"``.
    """
    if split not in data_cfg or data_cfg[split] is None:
        raise KeyError(f"data config has no dataset '{split}' (keys: {list(data_cfg)})")
    use_train = split == "train" if train is None else train
    transform_spec = data_cfg.get("train_transform" if use_train else "eval_transform")
    transform = instantiate(transform_spec) if transform_spec is not None else None
    return instantiate(data_cfg[split], transform=transform)
