"""DataLoaders for training and evaluation: seeded samples, distinct worker streams, bad-sample drops."""

from __future__ import annotations

import random
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, default_collate

from vitlab.data.sampler import ResumableSampler

__all__ = ["SeededDataset", "collate_skip_none", "seed_worker", "build_loader", "eval_loader"]


class SeededDataset(Dataset):
    """Wraps a dataset so item ``(index, seed)`` runs the base ``__getitem__`` with the CPU RNG seeded to ``seed``.

    The caller's torch RNG is restored afterwards, so with ``num_workers=0`` loading leaves the
    training process's RNG (dropout, drop path, mixup) untouched.
    """

    def __init__(self, base: Dataset):
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, item: int | tuple[int, int]) -> Any:
        return self.__getitems__([item])[0]

    def __getitems__(self, items: list[int | tuple[int, int]]) -> list[Any]:
        # the DataLoader fetches a whole batch through here: one RNG save/restore per batch
        with torch.random.fork_rng(devices=[]):
            out = []
            for item in items:
                if isinstance(item, tuple):
                    item, seed = item
                    torch.default_generator.manual_seed(seed)  # CPU only: the transforms run on CPU
                out.append(self.base[item])
            return out


class SkipNoneCollate:
    """``collate`` (default: ``default_collate``) of the samples that loaded; picklable for workers."""

    def __init__(self, collate: Callable[[list[Any]], Any] | None = None):
        self.collate = collate or default_collate

    def __call__(self, samples: list[Any]) -> Any:
        kept = [s for s in samples if s is not None]
        if not kept:
            raise RuntimeError("every sample of a batch failed to load (see the warnings above)")
        return self.collate(kept)


def collate_skip_none(samples: list[Any]) -> Any:
    """``default_collate`` of the samples that loaded (unreadable ones arrive as ``None``)."""
    kept = [s for s in samples if s is not None]
    if not kept:
        raise RuntimeError(f"every sample of a batch of {len(samples)} failed to load (see the warnings above)")
    return default_collate(kept)


def seed_worker(worker_id: int) -> None:
    """Distinct python/numpy streams per worker, derived from torch's per-worker seed."""
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


def build_loader(dataset: Dataset, *, batch_size: int, seed: int, shuffle: bool, rank: int = 0,
                 world_size: int = 1, drop_last: bool = True, num_workers: int = 0,
                 pin_memory: bool = False, collate_fn: Callable[[list[Any]], Any] | None = None
                 ) -> tuple[DataLoader, ResumableSampler]:
    """A DataLoader over ``dataset`` and the sampler that controls its epoch and resume position.

    Call ``sampler.set_epoch(epoch, start_batch)`` before iterating.

    Args:
        batch_size: per-rank batch size.
        seed: data-order and augmentation seed.
        shuffle / drop_last: True for training, False for evaluation.
        collate_fn: batch builder for the samples that loaded (default ``default_collate``), e.g.
            :func:`vitlab.ssl.collate_multicrop` for multi-crop SSL batches.
    """
    sampler = ResumableSampler(len(dataset), batch_size=batch_size, seed=seed, shuffle=shuffle, rank=rank,
                               world_size=world_size, drop_last=drop_last)
    # A private generator: workers' base seed must not draw from (and so perturb) the global RNG.
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(SeededDataset(dataset), batch_size=batch_size, sampler=sampler, drop_last=False,
                        num_workers=num_workers, collate_fn=SkipNoneCollate(collate_fn), worker_init_fn=seed_worker,
                        generator=generator, pin_memory=pin_memory, persistent_workers=False)
    return loader, sampler


def eval_loader(dataset: Dataset, *, batch_size: int, num_workers: int = 0, rank: int = 0, world_size: int = 1,
                pin_memory: bool = False, seed: int = 0) -> DataLoader:
    """A loader for evaluation: every sample once, in dataset order (this rank's share of it), no batch dropped.

    The one recipe behind the trainer's eval loaders, the frozen-feature protocol and the segmentation probe.
    """
    loader, sampler = build_loader(dataset, batch_size=batch_size, seed=seed, shuffle=False, rank=rank,
                                   world_size=world_size, drop_last=False, num_workers=num_workers,
                                   pin_memory=pin_memory)
    sampler.set_epoch(0)
    return loader
