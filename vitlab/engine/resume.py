"""Saving and restoring the whole training state, in either checkpoint format.

``train.checkpoint_format``: ``full`` (the default) gathers full (unsharded) state dicts keyed by
parameter name through ``torch.distributed.checkpoint.state_dict`` and rank 0 writes one file
(:mod:`vitlab.engine.checkpoint`); ``sharded`` has every rank write its own shards into a directory
(:mod:`vitlab.engine.sharded`), optionally in the background (``train.async_checkpoint``). Either
format resumes on any world size and strategy (DDP, FSDP2, one process): one saved by 2 ranks
resumes on 1, and the other way round.

``train.resume``: ``None`` (fresh run), ``auto`` (the newest complete checkpoint of the run directory,
of either format; fresh if there is none) or a path, a file or a sharded directory (an error naming
it if missing: never a silent fresh start).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

from vitlab.engine import distributed
from vitlab.engine.checkpoint import (
    FORMAT_VERSION,
    CheckpointManager,
    check_state_dict,
    is_sharded_checkpoint,
    latest_checkpoint,
    list_checkpoints,
    from_saved_keys,
    load_checkpoint,
    saved_state_dicts,
    saved_task_state,
    single_file_checkpoint,
    warn_skipped,
)
from vitlab.engine.distributed import DistInfo
from vitlab.engine.faults import Faults
from vitlab.engine.precision import Precision
from vitlab.engine.rng import get_rng_state, set_rng_state
from vitlab.engine.sharded import ShardedWriter, load_sharded, read_run_state

__all__ = ["RunState", "Checkpointer", "CHECKPOINT_FORMATS", "restore", "find_resume_path"]

CHECKPOINT_FORMATS = ("full", "sharded")


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


class Checkpointer:
    """Writes the run's checkpoints into ``<run>/checkpoints`` in ``train.checkpoint_format``; collective.

    Args:
        run_dir: the run directory.
        cfg: the run config (``train.checkpoint_format``, ``train.async_checkpoint``, ``train.keep_last``;
            its YAML goes into every checkpoint).
        info: this rank.
        faults: fault injection (``VITLAB_FAULT=SIGKILL@N:save`` fires inside the save of step N).

    Raises:
        ValueError: an unknown ``train.checkpoint_format``, or ``train.async_checkpoint`` without ``sharded``.
    """

    def __init__(self, run_dir: Path, cfg: DictConfig, info: DistInfo, faults: Faults | None = None):
        tc = cfg.train
        if tc.checkpoint_format not in CHECKPOINT_FORMATS:
            raise ValueError(f"train.checkpoint_format must be one of {', '.join(CHECKPOINT_FORMATS)}, "
                             f"got {tc.checkpoint_format!r}")
        if tc.async_checkpoint and tc.checkpoint_format != "sharded":
            raise ValueError("train.async_checkpoint=true needs train.checkpoint_format=sharded "
                             f"(got {tc.checkpoint_format!r})")
        self.cfg, self.info, self.faults = cfg, info, faults or Faults()
        self.manager = CheckpointManager(run_dir / "checkpoints", keep_last=tc.keep_last)
        self.sharded = ShardedWriter(self.manager, info, async_save=tc.async_checkpoint) \
            if tc.checkpoint_format == "sharded" else None

    def save(self, task: nn.Module, optimizer: torch.optim.Optimizer, precision: Precision, state: RunState,
             is_best: bool) -> None:
        """Save the whole training state at ``state.step`` (on every rank)."""
        rng = distributed.gather_objects(get_rng_state())
        run_state = {
            "format_version": FORMAT_VERSION,
            "scaler": precision.state_dict(),
            "step": state.step,
            "data": {"epoch": state.epoch, "batch": state.batch},
            "rng": rng,
            "best": dict(state.best),
            "world_size": self.info.world_size,
            "config": OmegaConf.to_yaml(self.cfg),
        }
        step = state.step
        before_commit = functools.partial(self.faults.maybe_fire_in_save, step)
        model_sd, optim_sd = saved_state_dicts(task, optimizer, full=self.sharded is None)
        if self.sharded is not None:
            self.sharded.save({"model": model_sd, "optimizer": optim_sd}, run_state, step, is_best=is_best,
                              before_commit=before_commit)
            return
        if self.info.is_main:
            ckpt = single_file_checkpoint(model_sd, optim_sd, run_state)
            self.manager.save(ckpt, step, is_best=is_best, before_commit=before_commit)
        distributed.barrier()

    def wait(self) -> None:
        """Wait for an asynchronous save still in flight (before the next save and before the run ends)."""
        if self.sharded is not None:
            self.sharded.wait()


def find_resume_path(resume: str | None, run_dir: Path) -> Path | None:
    if not resume:
        return None
    if resume == "auto":
        return latest_checkpoint(run_dir / "checkpoints")
    path = Path(resume).expanduser()
    if path.is_dir() and not is_sharded_checkpoint(path):
        raise FileNotFoundError(f"train.resume={resume!r}: {str(path)!r} is a directory but not a sharded "
                                "checkpoint (no .metadata; an unfinished save is named .tmp-step_<N>)")
    if not (path.is_file() or path.is_dir()):
        raise FileNotFoundError(f"train.resume={resume!r}: checkpoint not found: {str(path)!r}")
    return path


def _read(path: Path) -> dict:
    """A file checkpoint whole, or a sharded one's non-tensor state (its tensors load later, collectively)."""
    return read_run_state(path) if path.is_dir() else load_checkpoint(path)


def _load_newest(resume: str, run_dir: Path) -> tuple[Path, dict] | None:
    path = find_resume_path(resume, run_dir)
    if path is None:
        return None
    if resume != "auto":
        return path, _read(path)
    for candidate in reversed(list_checkpoints(run_dir / "checkpoints")):
        try:
            return candidate, _read(candidate)
        except Exception as exc:  # noqa: BLE001 - an unreadable checkpoint: fall back to the previous one
            warn_skipped(candidate, exc)
    return None


def _load_full(path: Path, ckpt: dict, task: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    # a mismatch names every key; set_state_dict loads (a plain load_state_dict cannot copy full
    # tensors into FSDP2's sharded DTensor parameters)
    check_state_dict(ckpt["model"], task.model.state_dict(), repr(str(path)), target="the configured model")
    full = from_saved_keys(saved_task_state(ckpt), task)
    missing = sorted(set(task.state_dict()) - set(full))
    if missing:
        raise ValueError(f"checkpoint {str(path)!r} lacks task state: {', '.join(missing[:10])}")
    set_state_dict(task, optimizer, model_state_dict=full, optim_state_dict=ckpt["optimizer"],
                   options=StateDictOptions(full_state_dict=True, strict=True))


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
    if path.is_dir():
        load_sharded(path, task, optimizer)
    else:
        _load_full(path, ckpt, task, optimizer)
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
