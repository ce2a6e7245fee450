"""Checkpoints: the on-disk format, atomic writes, discovery and retention (reading them, and rebuilding
a model from one: :mod:`vitlab.weights`, whose names this module re-exports).

Format (``format_version`` 1): one ``torch.save`` of a dict holding only tensors and plain types, so
it loads with ``torch.load(path, weights_only=True)``:

    model        state_dict of ``task.model`` (the network the ``model`` config describes; a task that registers
                 it under another name, as DINOv3 its ``teacher``, has its keys saved here all the same,
                 :func:`to_saved_keys`). Required.
    config       the full resolved config as a YAML string; its ``model`` key rebuilds the network.
                 Required (a converter of foreign weights writes ``model`` + ``config`` only).
    task         the rest of ``task.state_dict()``: teacher / EMA copies, heads, loss buffers
                 (keys not under ``model.``).
    optimizer    ``optimizer.state_dict()`` (full, unsharded).
    scaler       ``GradScaler.state_dict()`` ({} without fp16).
    step         optimizer steps taken (schedules are functions of it).
    data         {"epoch": int, "batch": batches of that epoch consumed}.
    rng          list indexed by rank of :func:`vitlab.engine.rng.get_rng_state` dicts.
    best         {"metric": name, "value": float or None}.
    format_version, world_size.

Files live in ``<run>/checkpoints/step_<N>.pt``; ``best.pt`` is a hard link to the best one.
A write goes to a temporary file in the same folder, is fsynced, and renamed over the final name,
so a crash mid-save leaves the previous checkpoints intact and temporaries are never discovered.

``train.checkpoint_format=sharded`` writes the same state as a directory ``step_<N>/`` instead, each
rank its own shards (:mod:`vitlab.engine.sharded`); it is renamed from ``.tmp-step_<N>/`` once complete.
Discovery and retention here treat both alike: ``list_checkpoints`` returns files and directories
ordered by step, ``keep_last`` prunes either kind, and the best sharded checkpoint is ``best/``, a
directory of hard links to the best one's files (so, like ``best.pt``, it survives the pruning of
its step and is itself a complete sharded checkpoint). A file reader given a sharded directory says
how to consolidate it (``vitlab convert --consolidate DIR OUT.pt``).
"""

from __future__ import annotations

import os
import re
import shutil
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict
from torch.distributed.tensor import DTensor

from vitlab.weights import (
    SHARDED_METADATA,
    StateDictMismatchError,
    build_model_from_checkpoint,
    check_state_dict,
    is_sharded_checkpoint,
    load_checkpoint,
    load_model_state,
    require_file,
)

__all__ = ["FORMAT_VERSION", "save_atomic", "fsync_dir", "load_checkpoint", "list_checkpoints", "latest_checkpoint",
           "is_sharded_checkpoint", "require_file", "CheckpointManager", "assert_finite", "first_non_finite",
           "StateDictMismatchError", "check_state_dict", "load_model_state", "build_model_from_checkpoint",
           "SHARDED_METADATA", "to_saved_keys", "from_saved_keys", "saved_state_dicts", "single_file_checkpoint",
           "saved_task_state"]

FORMAT_VERSION = 1
_STEP = re.compile(r"^step_(\d+)(\.pt)?$")  # step_<N>.pt (a file) or step_<N> (a sharded directory)


def first_non_finite(obj: Any, where: str = "checkpoint") -> str | None:
    """Where the first floating tensor in ``obj`` holding a NaN or Inf is (``"checkpoint.model.w"``), or None.

    A ``DTensor`` is checked on this rank's shard only (no collective).
    """
    if isinstance(obj, DTensor):
        obj = obj.to_local()
    if isinstance(obj, torch.Tensor):
        return where if obj.is_floating_point() and not bool(torch.isfinite(obj).all()) else None
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, (list, tuple)) else ()
    for k, v in items:
        found = first_non_finite(v, f"{where}.{k}" if isinstance(obj, dict) else f"{where}[{k}]")
        if found:
            return found
    return None


def assert_finite(obj: Any, where: str = "checkpoint") -> None:
    """Raise ``ValueError`` naming the first floating tensor in ``obj`` holding a NaN or Inf."""
    found = first_non_finite(obj, where)
    if found:
        raise ValueError(f"refusing to write a non-finite tensor at {found}")


def fsync_dir(path: str | Path) -> None:
    """fsync a folder, so the renames and creations inside it survive a power loss."""
    dir_fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def save_atomic(state: dict[str, Any], path: str | Path, before_commit: Callable[[], None] | None = None) -> Path:
    """``torch.save`` to a temporary file, fsync it, rename it over ``path`` and fsync the folder.

    Args:
        state: what to save.
        path: the final name.
        before_commit: called between the write and the rename (fault injection, :mod:`vitlab.engine.faults`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        if before_commit is not None:
            before_commit()
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)  # the rename itself must survive a power loss
    return path


def list_checkpoints(folder: str | Path) -> list[Path]:
    """Complete checkpoints in ``folder`` of both formats (``step_<N>.pt`` files, ``step_<N>`` sharded
    directories), oldest first by step; temporaries (``.tmp-*``) are never listed."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p.name, p) for p in folder.iterdir() if (m := _STEP.match(p.name))
             and (p.is_file() if m.group(2) else is_sharded_checkpoint(p))]
    return [p for *_, p in sorted(found)]


def latest_checkpoint(folder: str | Path) -> Path | None:
    """The newest complete checkpoint in ``folder``, or None."""
    found = list_checkpoints(folder)
    return found[-1] if found else None


class CheckpointManager:
    """Writes ``step_<N>.pt`` into ``folder``, keeps the last ``keep_last`` and links the best to ``best.pt``.

    Args:
        folder: checkpoint folder (``<run>/checkpoints``).
        keep_last: how many recent step checkpoints to keep (the best one is kept besides).

    Which checkpoint is best is the caller's call (``save(..., is_best=)``; the trainer's
    ``RunState.improve_best``). A sharded checkpoint is written elsewhere (:mod:`vitlab.engine.sharded`)
    and handed to :meth:`finish` once complete, for the same best link and pruning.
    """

    def __init__(self, folder: str | Path, *, keep_last: int = 2):
        if keep_last < 1:
            raise ValueError(f"keep_last must be >= 1, got {keep_last}")
        self.folder, self.keep_last = Path(folder), keep_last

    def save(self, state: dict[str, Any], step: int, *, is_best: bool = False,
             before_commit: Callable[[], None] | None = None) -> Path:
        """Check ``state`` is finite, write it atomically, update ``best.pt`` and prune old files."""
        assert_finite(state, "checkpoint")
        path = save_atomic(state, self.folder / f"step_{step:08d}.pt", before_commit)
        self.finish(path, is_best=is_best)
        return path

    def finish(self, path: Path, *, is_best: bool = False) -> None:
        """After ``path`` (a file or a sharded directory) is complete: link it as the best, prune old ones."""
        if is_best:
            self.link_best(path)
        for old in list_checkpoints(self.folder)[: -self.keep_last]:
            if old.is_dir():
                doomed = old.with_name(f".del-{old.name}")  # renamed first: never listed half-deleted
                os.replace(old, doomed)
                shutil.rmtree(doomed)
            else:
                old.unlink(missing_ok=True)  # best.pt is a hard link: the best one's data survives

    def link_best(self, path: Path) -> None:
        """``best.pt``: a hard link to the file; ``best/``: a directory of hard links to a sharded one's files."""
        if path.is_file():
            tmp = self.folder / f".tmp-{os.getpid()}-best.pt"
            tmp.unlink(missing_ok=True)
            os.link(path, tmp)
            os.replace(tmp, self.folder / "best.pt")
            return
        best, tmp, old = self.folder / "best", self.folder / ".tmp-best", self.folder / ".del-best"
        for stale in (tmp, old):
            shutil.rmtree(stale, ignore_errors=True)
        shutil.copytree(path, tmp, copy_function=os.link)
        fsync_dir(tmp)
        # a directory cannot be renamed over a non-empty one: move the old best aside, then swap
        if best.exists():
            os.replace(best, old)
        os.replace(tmp, best)
        fsync_dir(self.folder)
        shutil.rmtree(old, ignore_errors=True)


def _model_prefix(task: nn.Module) -> str:
    """Where ``task.model`` is in ``task.state_dict()``: ``"model."``, or the name the task registered it under."""
    model = getattr(task, "model", None)
    return next((name + "." for name, child in task.named_children() if child is model), "model.")


def _swap_prefix(state: Mapping[str, Any], old: str, new: str) -> dict[str, Any]:
    return {(new + k[len(old):] if k.startswith(old) else k): v for k, v in state.items()}


def to_saved_keys(state: Mapping[str, Any], task: nn.Module) -> dict[str, Any]:
    """``state``, keyed as ``task.state_dict()``, keyed as checkpoints store it: ``task.model``'s entries under
    ``model.`` whatever the task calls it (DINOv3's EMA ``teacher``, whose ``model`` is a property), the rest
    as they are. The layout of every checkpoint so far: old ones load, new ones read the same."""
    return _swap_prefix(state, _model_prefix(task), "model.")


def from_saved_keys(state: Mapping[str, Any], task: nn.Module) -> dict[str, Any]:
    """The inverse of :func:`to_saved_keys`: a checkpoint's task state keyed as ``task.state_dict()``."""
    return _swap_prefix(state, "model.", _model_prefix(task))


def saved_state_dicts(task: nn.Module, optimizer: torch.optim.Optimizer, *,
                      full: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """The live task's and optimizer's state dicts as either format saves them; collective.

    Args:
        task: the task (its network ``task.model``; the state dict comes keyed by :func:`to_saved_keys`).
        optimizer: its optimizer (the state dict comes keyed by parameter name).
        full: whole tensors, gathered into CPU memory (the single-file format); False: this rank's own
            shards, no gather (the sharded format).
    """
    options = StateDictOptions(full_state_dict=full, cpu_offload=full)
    task_state, optimizer_state = get_state_dict(task, optimizer, options=options)
    return to_saved_keys(task_state, task), optimizer_state


def single_file_checkpoint(task_state: Mapping[str, Any], optimizer_state: dict[str, Any],
                           run_state: Mapping[str, Any]) -> dict[str, Any]:
    """The single-file checkpoint (the format above) of a task state keyed as saved (the network under
    ``model.``), a full optimizer state, and the rest (step, data, rng, best, scaler, config, world_size,
    format_version: ``FORMAT_VERSION`` when missing)."""
    return {
        "format_version": run_state.get("format_version", FORMAT_VERSION),
        "model": {k[len("model."):]: v for k, v in task_state.items() if k.startswith("model.")},
        "task": {k: v for k, v in task_state.items() if not k.startswith("model.")},
        "optimizer": optimizer_state,
        **{k: v for k, v in run_state.items() if k != "format_version"},
    }


def saved_task_state(checkpoint: Mapping[str, Any]) -> dict[str, Any]:
    """The task state of a single-file checkpoint, keyed as saved: the inverse of its ``model`` / ``task`` split."""
    return {"model." + k: v for k, v in checkpoint["model"].items()} | checkpoint.get("task", {})


def warn_skipped(path: Path, exc: BaseException) -> None:
    warnings.warn(f"skipping unreadable checkpoint {str(path)!r}: {type(exc).__name__}: {exc}", stacklevel=2)
