"""Training and evaluation data for the trainer: loaders from the ``data`` config and the batch stream."""

from __future__ import annotations

from typing import Any, Callable, Iterator

import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from vitlab.config import eval_config, instantiate
from vitlab.data import PROTOCOL_SPLITS, build_dataset, build_loader, eval_loader, protocol_dataset
from vitlab.data.sampler import ResumableSampler
from vitlab.engine.distributed import DistInfo, loader_workers

__all__ = ["build_data", "data_stream", "to_device"]


def build_data(cfg: DictConfig, info: DistInfo) -> tuple[DataLoader, ResumableSampler, Callable[[str], DataLoader]]:
    """The training loader (per-rank micro-batches), its sampler, and a factory of eval loaders.

    ``data.batch_size`` is the global batch of one optimizer step, split over ranks and
    ``train.grad_accum_steps`` micro-batches. ``cfg.data`` is a typed :class:`vitlab.config.DataConfig`.
    """
    dc, accum = cfg.data, cfg.train.grad_accum_steps
    per_rank, rest = divmod(dc.batch_size, info.world_size * accum)
    if rest or per_rank == 0:
        raise ValueError(f"data.batch_size={dc.batch_size} must be divisible by world size {info.world_size} "
                         f"x train.grad_accum_steps={accum}")
    common = dict(rank=info.rank, world_size=info.world_size, num_workers=loader_workers(dc.num_workers),
                  pin_memory=info.device.type == "cuda")
    collate = instantiate(dc.collate) if dc.collate is not None else None  # e.g. multi-crop + masks
    loader, sampler = build_loader(build_dataset(dc, "train"), batch_size=per_rank, seed=cfg.train.seed,
                                   shuffle=True, drop_last=True, collate_fn=collate, **common)
    cache: dict[str, DataLoader] = {}

    def make_eval_loader(split: str) -> DataLoader:
        """``split``: a key of ``data`` (e.g. ``val``) or a protocol split (``holdout``, ``monitor_bank``, ...)."""
        if split not in cache:
            eval_batch = dc.eval_batch_size or dc.batch_size
            dataset = (protocol_dataset(dc, split, eval_config(cfg)) if split in PROTOCOL_SPLITS
                       else build_dataset(dc, split, train=False))
            cache[split] = eval_loader(dataset, batch_size=max(1, eval_batch // info.world_size), seed=cfg.train.seed,
                                       **common)
        return cache[split]

    return loader, sampler, make_eval_loader


def data_stream(loader: DataLoader, sampler: ResumableSampler, state: Any) -> Iterator[Any]:
    """Batches forever, from ``(state.epoch, state.batch)`` on, advancing that position as they are taken."""
    while True:
        sampler.set_epoch(state.epoch, state.batch)
        for batch in loader:
            state.batch += 1
            yield batch
        state.epoch, state.batch = state.epoch + 1, 0


def to_device(batch: Any, device: torch.device) -> Any:
    """Tensors of a (nested) batch moved to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch
