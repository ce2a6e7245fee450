"""Process-group setup under torchrun or Slurm, DDP / FSDP2 wrapping, and small collective helpers.

``torchrun --nproc_per_node N -m vitlab train ...`` (or multi-node with ``--rdzv-endpoint``) sets
``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``. Without them, a process started by ``srun`` (one task per
GPU: a submitit job, or a user's own ``sbatch`` script running ``srun vitlab train ...``) takes its rank
from Slurm's ``SLURM_PROCID`` / ``SLURM_LOCALID`` / ``SLURM_STEP_NUM_TASKS`` and meets the others at
the step's first node (:func:`launch_env`). Otherwise the run is a single process and every helper
here is a no-op. The backend is NCCL on CUDA and gloo on CPU.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["DistInfo", "launch_env", "first_host", "cpus_per_rank", "loader_workers", "setup", "cleanup", "wrap", "all_reduce_mean", "all_reduce_sum", "all_reduce_max", "broadcast_object", "gather_objects",
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


def first_host(nodelist: str) -> str:
    """The first host of a Slurm host list: ``gpu[003-005,9],cpu1`` -> ``gpu003``, ``n[1-2]-ib`` -> ``n1-ib``."""
    head = re.match(r"([^,\[]*)(?:\[([^\]]*)\])?([^,\[]*)", nodelist.strip())
    if not head or not head.group(0):
        raise ValueError(f"SLURM_STEP_NODELIST={nodelist!r} is not a Slurm host list")
    prefix, ranges, suffix = head.groups()
    return prefix + (ranges.split(",")[0].split("-")[0] if ranges else "") + suffix


def launch_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """torch.distributed's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``,
    ``MASTER_ADDR``, ``MASTER_PORT``) for this process: torchrun's where it set them, else derived from
    the Slurm step this process is a task of (``srun``), else empty (a single process).

    Under Slurm the rendezvous is the step's first node, on a port derived from the job id (so the
    ranks of one job agree without talking, and two jobs on one node do not collide); ``MASTER_ADDR``
    / ``MASTER_PORT`` set by the user win.
    """
    env = os.environ if environ is None else environ
    if "RANK" in env and "WORLD_SIZE" in env:
        return {k: env[k] for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR",
                                    "MASTER_PORT") if k in env}
    tasks = env.get("SLURM_STEP_NUM_TASKS")  # set by srun only: a batch script's own shell is not a rank
    if not tasks or "SLURM_PROCID" not in env:
        return {}
    nodes = max(1, int(env.get("SLURM_STEP_NUM_NODES", env.get("SLURM_JOB_NUM_NODES", "1"))))
    job = int(env.get("SLURM_ARRAY_JOB_ID", env.get("SLURM_JOB_ID", "0"))) + int(env.get("SLURM_ARRAY_TASK_ID", "0"))
    return {"RANK": env["SLURM_PROCID"], "WORLD_SIZE": tasks, "LOCAL_RANK": env.get("SLURM_LOCALID", "0"),
            "LOCAL_WORLD_SIZE": str(max(1, int(tasks) // nodes)),
            "MASTER_ADDR": env.get("MASTER_ADDR") or first_host(env.get("SLURM_STEP_NODELIST", env.get(
                "SLURM_JOB_NODELIST", "localhost"))),
            "MASTER_PORT": env.get("MASTER_PORT") or str(20000 + job % 20000)}


def cpus_per_rank(environ: Mapping[str, str] | None = None) -> int:
    """CPUs this rank may use: Slurm's ``SLURM_CPUS_PER_TASK`` inside a job, else the CPUs this process
    may run on shared by the node's ranks."""
    env = os.environ if environ is None else environ
    if env.get("SLURM_CPUS_PER_TASK"):
        return int(env["SLURM_CPUS_PER_TASK"])
    local_world = int(launch_env(env).get("LOCAL_WORLD_SIZE", "1"))
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cpus // max(1, local_world))


def loader_workers(num_workers: int | None) -> int:
    """``data.num_workers``, or where it is None one loader worker per CPU of this rank but the one it
    trains on (inside a Slurm job: ``launch.cpus_per_task - 1``)."""
    return num_workers if num_workers is not None else cpus_per_rank() - 1


def setup(device: str = "auto") -> DistInfo:
    """Initialise the process group when launched by torchrun or as a Slurm task, and pick this rank's device.

    Args:
        device: ``auto`` (CUDA when available), ``cuda`` or ``cpu``.
    """
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if use_cuda and not torch.cuda.is_available():
        raise RuntimeError("train.device='cuda' but CUDA is not available")
    os.environ.update(launch_env())  # init_process_group's env:// reads them
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    # a task may see only its own GPUs (Slurm's --gpus-per-task / --gpu-bind): count within what it sees
    dev = torch.device("cuda", local_rank % torch.cuda.device_count()) if use_cuda else torch.device("cpu")
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
