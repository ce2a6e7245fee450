"""A resumable, rank-aware sampler whose data order depends only on (seed, epoch).

The epoch's permutation is split into global batches of ``batch_size * world_size`` samples; rank
``r`` takes the ``r``-th slice of each. So 2 ranks at local batch B/2 see exactly the samples that
1 rank at batch B sees, and a run resumed at (epoch, batch) continues with the very next samples.

Each index is yielded with its own augmentation seed (``(index, seed)``), so random transforms
depend on the sample and epoch, not on which worker or process draws them: resumes are exact with
any ``num_workers``.
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import Sampler

__all__ = ["ResumableSampler", "sample_seed"]


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A per-(seed, epoch, sample) seed; distinct for distinct triples in practice."""
    return (seed * 0x9E3779B97F4A7C15 + epoch * 0xBF58476D1CE4E5B9 + index * 0x94D049BB133111EB) % (2**63)


class ResumableSampler(Sampler):
    """Yields ``(index, seed)`` for this rank's share of every full global batch of one epoch.

    Args:
        length: dataset size.
        batch_size: per-rank batch size.
        seed: base seed of the permutation and the augmentation seeds.
        shuffle: permute each epoch (False: dataset order, for evaluation).
        rank, world_size: this process's share.
        drop_last: drop the last partial global batch (training); else pad nothing and keep it.
    """

    def __init__(self, length: int, *, batch_size: int, seed: int = 0, shuffle: bool = True, rank: int = 0,
                 world_size: int = 1, drop_last: bool = True):
        self.length, self.batch_size, self.seed, self.shuffle = length, batch_size, seed, shuffle
        self.rank, self.world_size, self.drop_last = rank, world_size, drop_last
        self.epoch, self.start_batch = 0, 0
        if drop_last and self.batches_per_epoch == 0:
            raise ValueError(f"dataset of {length} samples is smaller than one global batch "
                             f"({batch_size} x {world_size} ranks)")

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.world_size

    @property
    def batches_per_epoch(self) -> int:
        full, rest = divmod(self.length, self.global_batch)
        return full if self.drop_last or rest == 0 else full + 1

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch's permutation and skip its first ``start_batch`` batches (resume)."""
        self.epoch, self.start_batch = epoch, start_batch

    def _order(self) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.length)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(self.length, generator=g)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        order = self._order()
        B, G = self.batch_size, self.global_batch
        for b in range(self.start_batch, self.batches_per_epoch):
            chunk = order[b * G: (b + 1) * G]
            mine = chunk[self.rank * B: (self.rank + 1) * B] if self.drop_last else chunk[self.rank::self.world_size]
            for index in mine.tolist():
                yield index, sample_seed(self.seed, self.epoch, index)

    def __len__(self) -> int:
        return max(0, self.batches_per_epoch - self.start_batch) * self.batch_size
