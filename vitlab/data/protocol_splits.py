"""The frozen-feature protocol's splits (:mod:`vitlab.eval.protocol` scores them; the trainer's online
monitor and ``vitlab eval`` load them), all with the eval transform:

- ``holdout``: ``eval.val_size`` images of ``data.train``, drawn with ``eval.split_seed`` (fixed, so
  every run, checkpoint and baseline of a study is scored on the same images);
- ``bank``: the other training images (the k-NN bank, the linear probe's training set);
- ``monitor_bank``: ``eval.monitor_bank`` of the bank's images (the online monitor's cheaper bank);
- ``test``: ``data.val``, the held-out set.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset, Subset

from vitlab.data.build import build_dataset

__all__ = ["PROTOCOL_SPLITS", "split_indices", "protocol_dataset"]

PROTOCOL_SPLITS = ("holdout", "bank", "monitor_bank", "test")


def split_indices(num_train: int, protocol: Any) -> dict[str, torch.Tensor]:
    """Sorted indices into ``data.train`` of ``holdout``, ``bank`` and ``monitor_bank``."""
    if not 0 < protocol.val_size < num_train:
        raise ValueError(f"eval.val_size={protocol.val_size} must be between 1 and the {num_train - 1} "
                         f"images data.train has besides one bank image")
    perm = torch.randperm(num_train, generator=torch.Generator().manual_seed(protocol.split_seed))
    rest = perm[protocol.val_size:]
    monitor = rest[:protocol.monitor_bank] if protocol.monitor_bank else rest
    return {"holdout": perm[:protocol.val_size].sort().values, "bank": rest.sort().values,
            "monitor_bank": monitor.sort().values}


def protocol_dataset(data_cfg: Any, split: str, protocol: Any) -> Dataset:
    """One of :data:`PROTOCOL_SPLITS` as a dataset with the eval transform."""
    if split == "test":
        return build_dataset(data_cfg, "val", train=False)
    if split not in PROTOCOL_SPLITS:
        raise KeyError(f"unknown protocol split {split!r} (known: {', '.join(PROTOCOL_SPLITS)})")
    train = build_dataset(data_cfg, "train", train=False)
    return Subset(train, split_indices(len(train), protocol)[split].tolist())
