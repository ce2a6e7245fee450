"""Process-group setup under torchrun, DDP / FSDP2 wrapping, and small collective helpers.

``torchrun --nproc_per_node N -m vitlab train ...`` (or multi-node with ``--rdzv-endpoint``) sets
``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; without them the run is a single process and every
helper here is a no-op. The backend is NCCL on CUDA and gloo on CPU.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["DistInfo", "setup", "cleanup", "wrap", "all_reduce_mean", "all_reduce_sum", "all_reduce_max", "broadcast_object", "gather_objects",
           "barrier"]


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def setup(device: str = "auto") -> DistInfo:
    """Initialise the process group when launched by torchrun and pick this rank's device.

    Args:
        device: ``auto`` (CUDA when available), ``cuda`` or ``cpu``.
    """
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if use_cuda and not torch.cuda.is_available():
        raise RuntimeError("train.device='cuda' but CUDA is not available")
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    dev = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", device_id=dev if use_cuda else None)
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank, device=dev)


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def wrap(module: nn.Module, info: DistInfo, strategy: str = "ddp") -> nn.Module:
    """Wrap the task for data parallelism: ``ddp``, ``fsdp`` (FSDP2 ``fully_shard``) or ``none``.

    FSDP2 shards every block of every ``blocks`` ``ModuleList`` and then the whole task, so the
    parameters of one block are gathered just in time. The returned module is called like the task.
    """
    if not info.enabled or strategy == "none":
        return module
    if strategy == "ddp":
        ids = [info.device.index] if info.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(module, device_ids=ids)
    if strategy == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for sub in module.modules():
            for name, child in sub.named_children():
                if name == "blocks" and isinstance(child, nn.ModuleList):
                    for block in child:
                        fully_shard(block)
        fully_shard(module)
        return module
    raise ValueError(f"train.strategy must be 'ddp', 'fsdp' or 'none', got {strategy!r}")


@contextlib.contextmanager
def full_params(module: nn.Module):
    """Gathered parameters of an FSDP2 root for code that does not go through its ``forward``
    (evaluation calls ``task.evaluate``, which uses the networks directly). The sharded blocks
    gather themselves in their own forward hooks; this gathers the root's parameters (patch
    embedding, tokens, final norm, heads). A no-op for other modules."""
    from torch.distributed.fsdp import FSDPModule

    if not isinstance(module, FSDPModule):
        yield
        return
    module._get_fsdp_state()._lazy_init()  # make it the root before any block's hook claims that role
    module.unshard()
    try:
        yield
    finally:
        module.reshard()


def all_reduce_mean(value: torch.Tensor) -> torch.Tensor:
    """Mean of ``value`` over ranks (a copy; the input is untouched)."""
    out = value.detach().clone()
    if dist.is_initialized():
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        out /= dist.get_world_size()
    return out


def all_reduce_sum(value: torch.Tensor) -> torch.Tensor:
    """Sum of ``value`` over ranks (a copy)."""
    out = value.detach().clone()
    if dist.is_initialized():
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def all_reduce_max(value: torch.Tensor) -> torch.Tensor:
    """Elementwise max of ``value`` over ranks (a copy): whether any rank raised a flag."""
    out = value.detach().clone()
    if dist.is_initialized():
        dist.all_reduce(out, op=dist.ReduceOp.MAX)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank."""
    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (on every rank), indexed by rank."""
    if not dist.is_initialized():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()
