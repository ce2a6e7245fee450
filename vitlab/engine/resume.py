"""Saving and restoring the whole training state in the format of :mod:`vitlab.engine.checkpoint`.

``train.resume``: ``None`` (fresh run), ``auto`` (the newest complete checkpoint of the run directory,
fresh if there is none) or a path (an error naming it if missing: never a silent fresh start).
Model and optimizer state go through ``torch.distributed.checkpoint.state_dict`` with full (unsharded)
state dicts keyed by parameter name, so DDP, FSDP2 and single-process checkpoints are interchangeable:
one saved by 2 ranks resumes on 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict, set_state_dict

from vitlab.engine import distributed
from vitlab.engine.checkpoint import (
    FORMAT_VERSION,
    CheckpointManager,
    check_state_dict,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    warn_skipped,
)
from vitlab.engine.distributed import DistInfo
from vitlab.engine.precision import Precision
from vitlab.engine.rng import get_rng_state, set_rng_state

__all__ = ["RunState", "save_checkpoint", "restore", "find_resume_path"]

_MODEL = "model."


@dataclass
class RunState:
    """Counters saved with every checkpoint: optimizer steps, data position, best eval metric."""

    step: int = 0
    epoch: int = 0
    batch: int = 0  # batches of ``epoch`` already consumed
    best: dict[str, Any] = field(default_factory=lambda: {"value": None})

    def improve_best(self, value: float | None, mode: str) -> bool:
        if value is None:
            return False
        best = self.best["value"]
        if best is None or (value > best if mode == "max" else value < best):
            self.best["value"] = float(value)
            return True
        return False


def save_checkpoint(run_dir: Path, cfg: DictConfig, task: nn.Module, optimizer: torch.optim.Optimizer,
                    precision: Precision, state: RunState, info: DistInfo, keep_last: int, is_best: bool) -> None:
    """Collect the state on every rank (collectives), write it on rank 0."""
    model_sd, optim_sd = get_state_dict(task, optimizer, options=StateDictOptions(full_state_dict=True,
                                                                                 cpu_offload=True))
    rng = distributed.gather_objects(get_rng_state())
    if info.is_main:
        ckpt = {
            "format_version": FORMAT_VERSION,
            "model": {k[len(_MODEL):]: v for k, v in model_sd.items() if k.startswith(_MODEL)},
            "task": {k: v for k, v in model_sd.items() if not k.startswith(_MODEL)},
            "optimizer": optim_sd,
            "scaler": precision.state_dict(),
            "step": state.step,
            "data": {"epoch": state.epoch, "batch": state.batch},
            "rng": rng,
            "best": dict(state.best),
            "world_size": info.world_size,
            "config": OmegaConf.to_yaml(cfg),
        }
        manager = CheckpointManager(run_dir / "checkpoints", keep_last=keep_last)
        manager.save(ckpt, state.step, is_best=is_best)
    distributed.barrier()


def find_resume_path(resume: str | None, run_dir: Path) -> Path | None:
    if not resume:
        return None
    if resume == "auto":
        return latest_checkpoint(run_dir / "checkpoints")
    path = Path(resume).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"train.resume={resume!r}: checkpoint not found: {str(path)!r}")
    return path


def _load_newest(resume: str, run_dir: Path) -> tuple[Path, dict] | None:
    path = find_resume_path(resume, run_dir)
    if path is None:
        return None
    if resume != "auto":
        return path, load_checkpoint(path)
    for candidate in reversed(list_checkpoints(run_dir / "checkpoints")):
        try:
            return candidate, load_checkpoint(candidate)
        except Exception as exc:  # noqa: BLE001 - an unreadable file: fall back to the previous one
            warn_skipped(candidate, exc)
    return None


def restore(resume: str | None, run_dir: Path, task: nn.Module, optimizer: torch.optim.Optimizer,
            precision: Precision, state: RunState, info: DistInfo) -> Path | None:
    """Load the checkpoint ``resume`` points at into the live objects; returns its path (None: fresh run)."""
    found = _load_newest(resume, run_dir) if resume else None
    if found is None:
        if resume == "auto" and info.is_main:
            print(f"[vitlab] train.resume=auto: no checkpoint in {str(run_dir / 'checkpoints')!r}; starting fresh",
                  flush=True)
        return None
    path, ckpt = found
    # a mismatch names every key; set_state_dict loads (a plain load_state_dict cannot copy full
    # tensors into FSDP2's sharded DTensor parameters)
    check_state_dict(ckpt["model"], task.model.state_dict(), repr(str(path)), target="the configured model")
    full = {_MODEL + k: v for k, v in ckpt["model"].items()} | ckpt.get("task", {})
    missing = sorted(set(task.state_dict()) - set(full))
    if missing:
        raise ValueError(f"checkpoint {str(path)!r} lacks task state: {', '.join(missing[:10])}")
    set_state_dict(task, optimizer, model_state_dict=full, optim_state_dict=ckpt["optimizer"],
                   options=StateDictOptions(full_state_dict=True, strict=True))
    precision.load_state_dict(ckpt.get("scaler", {}))
    state.step, state.epoch, state.batch = ckpt["step"], ckpt["data"]["epoch"], ckpt["data"]["batch"]
    state.best = dict(ckpt.get("best", {"value": None}))
    rngs = ckpt["rng"]
    if len(rngs) != info.world_size and info.is_main:
        print(f"[vitlab] checkpoint saved by {len(rngs)} ranks, resuming on {info.world_size}: "
              "per-rank RNG streams are reassigned", flush=True)
    set_rng_state(rngs[info.rank % len(rngs)])
    if info.is_main:
        print(f"[vitlab] resumed from {str(path)!r} at step {state.step}", flush=True)
    return path
