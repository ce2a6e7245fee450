"""Checkpoints: the on-disk format, atomic writes, discovery, retention, and rebuilding a model.

Format (``format_version`` 1): one ``torch.save`` of a dict holding only tensors and plain types, so
it loads with ``torch.load(path, weights_only=True)``:

    model        state_dict of ``task.model`` (the network the ``model`` config describes). Required.
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
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from torch import nn

__all__ = ["FORMAT_VERSION", "save_atomic", "load_checkpoint", "list_checkpoints", "latest_checkpoint",
           "CheckpointManager", "assert_finite", "StateDictMismatchError", "check_state_dict", "load_model_state",
           "build_model_from_checkpoint"]

FORMAT_VERSION = 1
_STEP_FILE = re.compile(r"^step_(\d+)\.pt$")


def assert_finite(obj: Any, where: str = "checkpoint") -> None:
    """Raise ``ValueError`` naming the first floating tensor in ``obj`` holding a NaN or Inf."""
    if isinstance(obj, torch.Tensor):
        if obj.is_floating_point() and not bool(torch.isfinite(obj).all()):
            raise ValueError(f"refusing to write a non-finite tensor at {where}")
    elif isinstance(obj, dict):
        for k, v in obj.items():
            assert_finite(v, f"{where}.{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            assert_finite(v, f"{where}[{i}]")


def save_atomic(state: dict[str, Any], path: str | Path) -> Path:
    """``torch.save`` to a temporary file, fsync it, rename it over ``path`` and fsync the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself must survive a power loss
    finally:
        os.close(dir_fd)
    return path


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; a missing file is an error naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {str(path)!r}")
    ckpt = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise ValueError(f"{str(path)!r} is not a vitlab checkpoint (a dict with a 'model' state_dict)")
    return ckpt


def list_checkpoints(folder: str | Path) -> list[Path]:
    """Complete ``step_<N>.pt`` files in ``folder``, oldest first (temporaries are never listed)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _STEP_FILE.match(p.name))]
    return [p for _, p in sorted(found)]


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
    ``RunState.improve_best``).
    """

    def __init__(self, folder: str | Path, *, keep_last: int = 2):
        if keep_last < 1:
            raise ValueError(f"keep_last must be >= 1, got {keep_last}")
        self.folder, self.keep_last = Path(folder), keep_last

    def save(self, state: dict[str, Any], step: int, *, is_best: bool = False) -> Path:
        """Check ``state`` is finite, write it atomically, update ``best.pt`` and prune old files."""
        assert_finite(state, "checkpoint")
        path = save_atomic(state, self.folder / f"step_{step:08d}.pt")
        if is_best:
            tmp = self.folder / f".tmp-{os.getpid()}-best.pt"
            tmp.unlink(missing_ok=True)
            os.link(path, tmp)
            os.replace(tmp, self.folder / "best.pt")
        for old in list_checkpoints(self.folder)[: -self.keep_last]:
            old.unlink(missing_ok=True)  # best.pt is a hard link: the best one's data survives
        return path


class StateDictMismatchError(ValueError):
    """A state dict does not fit the architecture; the message lists every offending key."""


def check_state_dict(given: Mapping[str, torch.Tensor], expected: Mapping[str, Any], what: str,
                     target: str = "the architecture") -> None:
    """Raise :class:`StateDictMismatchError` unless ``given`` has exactly ``expected``'s keys and shapes.

    Args:
        given: the checkpoint's tensors.
        expected: tensors (or anything with ``.shape``) of the architecture, in the checkpoint's names.
        what: the checkpoint, for the message (``"official DINOv3"``, a path).
        target: what it was checked against, for the message.
    """
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    mismatched = [f"{k}: checkpoint {tuple(given[k].shape)} vs model {tuple(expected[k].shape)}"
                  for k in sorted(set(given) & set(expected)) if tuple(given[k].shape) != tuple(expected[k].shape)]
    if not (missing or unexpected or mismatched):
        return
    lines = [f"{what} checkpoint does not match {target}:"]
    for title, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", mismatched)):
        if items:
            lines.append(f"  {title} ({len(items)}): " + ", ".join(items))
    raise StateDictMismatchError("\n".join(lines))


def load_model_state(model: nn.Module, state: Mapping[str, torch.Tensor], what: str = "the") -> None:
    """``load_state_dict(strict=True)`` after :func:`check_state_dict`, so a mismatch names every key."""
    check_state_dict(state, model.state_dict(), what, target="the configured model")
    model.load_state_dict(state, strict=True)


def build_model_from_checkpoint(path: str | Path, *, init: bool = False, **model_overrides: Any) -> tuple[nn.Module, Any]:
    """Rebuild ``config.model`` from a checkpoint, load its weights, and return (model, config).

    Args:
        path: a vitlab checkpoint (training output or converted weights).
        init: skip the weights and return the run's random initialisation instead: the model is built
            after seeding with the run's ``train.seed``, as the trainer builds it first thing (the
            baseline a pretraining is compared with).
        **model_overrides: constructor arguments replacing the config's (e.g. ``num_classes=0``);
            head parameters that then have no place are dropped.
    """
    from vitlab.config import instantiate, typed_sections  # deferred: keeps checkpoint IO importable without hydra

    ckpt = load_checkpoint(path)
    if "config" not in ckpt:
        raise ValueError(f"{str(path)!r} holds no 'config' YAML; cannot rebuild its model")
    cfg = typed_sections(OmegaConf.create(ckpt["config"]))
    if init:
        from vitlab.engine.rng import seed_everything

        seed_everything(OmegaConf.select(cfg, "train.seed", default=0))
        return instantiate(cfg.model, **model_overrides), cfg
    model = instantiate(cfg.model, **model_overrides)
    state = ckpt["model"]
    if model_overrides.get("num_classes", None) == 0:
        state = {k: v for k, v in state.items() if not k.startswith("head.")}
    load_model_state(model, state, repr(str(path)))
    return model, cfg


def warn_skipped(path: Path, exc: BaseException) -> None:
    warnings.warn(f"skipping unreadable checkpoint {str(path)!r}: {type(exc).__name__}: {exc}", stacklevel=2)
