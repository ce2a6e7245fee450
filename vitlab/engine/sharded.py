"""Sharded checkpoints (``train.checkpoint_format=sharded``): every rank writes its own shards in
parallel with ``torch.distributed.checkpoint`` (DCP), and a checkpoint loads on any number of ranks.

Layout of ``<run>/checkpoints/step_<N>/``:

    .metadata           DCP's index: each tensor's global shape and which file holds which chunk of it.
    __<rank>_0.distcp   what rank <rank> wrote: its shards of ``model.<key>`` (the whole task state dict,
                        the network under ``model.model.``) and of ``optimizer.<...>`` (keyed by parameter
                        name, as ``get_state_dict`` gives it); a replicated (DDP) tensor is written once.
    run_state.pt        rank 0's: the rest of the single-file format (step, data, rng of every rank, best,
                        scaler, config, world_size, format_version), loadable with ``weights_only=True``.

Atomic: the ranks write into ``.tmp-step_<N>/``. DCP gathers every rank's write results before rank 0
writes ``.metadata``, so once rank 0's save returns all ranks have finished; rank 0 then writes
``run_state.pt``, fsyncs and renames the directory to ``step_<N>``. A directory of that name is
therefore always complete, and ``train.resume=auto`` never sees a half-written one.

Resharding: DCP stores global shapes. :func:`load_sharded` asks the live task and optimizer for their
own state dicts (FSDP2 shards, or whole tensors) and DCP reads this rank's slices into them, so a
checkpoint of 2 FSDP2 ranks loads into 1 process, into DDP, or into 4 ranks alike.

Asynchronous (``train.async_checkpoint``): ``dcp.async_save`` copies the state to CPU memory, then
writes it from a thread while training goes on, over a gloo process group of its own (one group must
not serve two threads at once, and async saves need a CPU backend even when training uses NCCL). Rank
0 commits a save as soon as it is written; the next save, and the end of the run, wait for it first.

:func:`consolidate` turns a sharded directory into the single-file format (``vitlab convert --consolidate``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import warnings
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

from vitlab.engine import distributed
from vitlab.engine.checkpoint import (
    CheckpointManager,
    check_state_dict,
    first_non_finite,
    from_saved_keys,
    fsync_dir,
    is_sharded_checkpoint,
    save_atomic,
    saved_state_dicts,
    single_file_checkpoint,
)
from vitlab.engine.distributed import DistInfo

__all__ = ["RUN_STATE", "ShardedWriter", "read_run_state", "load_sharded", "consolidate"]

RUN_STATE = "run_state.pt"


def _no_dist() -> bool:
    return not dist.is_initialized()


@contextlib.contextmanager
def _single_process_quiet():
    """Silence DCP's warning that it assumes a single process without a process group: so do we."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled, unavailable or uninitialized")
        yield


class ShardedWriter:
    """Writes ``step_<N>/`` sharded checkpoints into ``manager.folder``; collective: call on every rank.

    Args:
        manager: the run's checkpoint folder, best link and retention (applied to each completed save).
        info: this rank.
        async_save: write in a background thread (``dcp.async_save``); :meth:`wait` before exiting.
    """

    def __init__(self, manager: CheckpointManager, info: DistInfo, *, async_save: bool = False):
        self.manager, self.info, self.async_save = manager, info, async_save
        self.group = dist.new_group(backend="gloo") if async_save and dist.is_initialized() else None
        self.pending: Future | None = None  # the async save in flight
        self.uncommitted: Callable[[], None] | None = None  # rank 0: its commit, until run
        self.commit_error: BaseException | None = None
        self.lock = threading.Lock()

    def save(self, state_dict: dict[str, Any], run_state: dict[str, Any], step: int, *, is_best: bool = False,
             before_commit: Callable[[], None] | None = None) -> None:
        """Write ``state_dict`` (``{"model": ..., "optimizer": ...}``, this rank's shards) and rank 0's
        ``run_state`` as ``step_<step>/``.

        Args:
            state_dict: tensors (DTensors) as ``get_state_dict(..., full_state_dict=False)`` gives them.
            run_state: the non-tensor state (identical on every rank; rank 0's is written).
            step: names the directory.
            is_best: link it as ``best/`` once complete.
            before_commit: rank 0 calls it between the write and the rename (fault injection).
        """
        self.wait()
        # every rank checks its own shards; all must agree before the collective save starts
        bad = [where for where in distributed.gather_objects(first_non_finite(state_dict)) if where]
        if bad:
            raise ValueError(f"refusing to write a non-finite tensor at {bad[0]}")
        folder = self.manager.folder
        tmp, final = folder / f".tmp-step_{step:08d}", folder / f"step_{step:08d}"
        if self.info.is_main:
            shutil.rmtree(tmp, ignore_errors=True)  # left by a save killed before its commit
            tmp.mkdir(parents=True)
        distributed.barrier()

        def commit() -> None:
            save_atomic(run_state, tmp / RUN_STATE)  # fsyncs tmp/ too (DCP fsynced its own files)
            if before_commit is not None:
                before_commit()
            aside = final.with_name(f".del-{final.name}")
            if final.exists():  # the same step saved again (a run resumed from an earlier checkpoint)
                os.replace(final, aside)
            os.replace(tmp, final)
            fsync_dir(folder)
            shutil.rmtree(aside, ignore_errors=True)
            self.manager.finish(final, is_best=is_best)

        if not self.async_save:
            with _single_process_quiet():
                dcp.save(state_dict, checkpoint_id=tmp, no_dist=_no_dist())
            if self.info.is_main:
                commit()
            distributed.barrier()  # no rank starts the next save (which clears .tmp-) before the commit
            return
        with _single_process_quiet():
            self.pending = dcp.async_save(state_dict, checkpoint_id=tmp, process_group=self.group,
                                          no_dist=_no_dist())
        if self.info.is_main:
            self.uncommitted = commit
            self.pending.add_done_callback(self._commit_pending)

    def _commit_pending(self, future: Future) -> None:
        """Rank 0: commit the finished async save, once (from the writer thread or from :meth:`wait`)."""
        with self.lock:
            if self.uncommitted is None or future.exception() is not None:
                return
            commit, self.uncommitted = self.uncommitted, None
            try:
                commit()
            except BaseException as exc:  # noqa: BLE001 - raised again by wait(), in the training thread
                self.commit_error = exc

    def wait(self) -> None:
        """Block until the async save in flight (if any) is written and committed; raise its error."""
        if self.pending is None:
            return
        future, self.pending = self.pending, None
        future.result()
        self._commit_pending(future)  # a done-callback may still be running: the lock makes it once
        if self.commit_error is not None:
            error, self.commit_error = self.commit_error, None
            raise error


def read_run_state(path: str | Path) -> dict[str, Any]:
    """The non-tensor state of the sharded checkpoint ``path``; errors name the directory.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: ``path`` is a file, or a directory that is not a vitlab sharded checkpoint.
    """
    path = Path(path)
    if path.is_file():
        raise ValueError(f"{str(path)!r} is a single-file checkpoint, not a sharded checkpoint directory "
                         "(it needs no consolidation: pass the file itself)")
    if not path.exists():
        raise FileNotFoundError(f"sharded checkpoint not found: {str(path)!r}")
    if not is_sharded_checkpoint(path) or not (path / RUN_STATE).is_file():
        raise ValueError(f"{str(path)!r} is not a vitlab sharded checkpoint directory (it lacks .metadata or "
                         f"{RUN_STATE}; an unfinished save is named .tmp-step_<N>)")
    return torch.load(path / RUN_STATE, map_location="cpu", weights_only=True)


def _check_task_state(path: Path, model_sd: dict[str, Any]) -> None:
    """The checkpoint's task state against the live task's, keys as DCP flattens them (a module's extra
    state ``{"n": 1}`` is ``<module>._extra_state.n``) and tensors by global shape; nothing is read but
    ``.metadata``."""
    from torch.distributed.checkpoint._nested_dict import flatten_state_dict

    def shaped(value: Any) -> torch.Tensor:  # check_state_dict compares .shape; other values have none: ()
        if isinstance(value, dcp.TensorStorageMetadata):
            return torch.empty(value.size, device="meta")
        return value if isinstance(value, torch.Tensor) else torch.empty((), device="meta")

    saved = dcp.FileSystemReader(str(path)).read_metadata().state_dict_metadata
    live, _ = flatten_state_dict({"model": model_sd})
    given = {k[len("model."):]: shaped(v) for k, v in saved.items() if k.startswith("model.")}
    expected = {k[len("model."):]: shaped(v) for k, v in live.items()}
    check_state_dict(given, expected, repr(str(path)), target="the configured model and task")


def load_sharded(path: str | Path, task: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Load the sharded checkpoint ``path`` into ``task`` and ``optimizer`` (any world size and strategy);
    collective. Returns its non-tensor state (:func:`read_run_state`).

    Raises:
        vitlab.engine.checkpoint.StateDictMismatchError: its task state has other keys or shapes than
            ``task``'s; the message names the directory and every offending key.
    """
    path = Path(path)
    run_state = read_run_state(path)
    model_sd, optim_sd = saved_state_dicts(task, optimizer, full=False)  # this rank's shards: dcp.load reads into them
    _check_task_state(path, model_sd)
    state = {"model": model_sd, "optimizer": optim_sd}
    with _single_process_quiet():
        dcp.load(state, checkpoint_id=str(path), no_dist=_no_dist())
    set_state_dict(task, optimizer, model_state_dict=from_saved_keys(state["model"], task),
                   optim_state_dict=state["optimizer"],
                   options=StateDictOptions(full_state_dict=False, strict=True))
    return run_state


def consolidate(path: str | Path) -> dict[str, Any]:
    """The sharded checkpoint ``path`` as one single-file checkpoint dict (the keys of
    :mod:`vitlab.engine.checkpoint`'s format), read into this process; no process group needed."""
    from torch.distributed.checkpoint.format_utils import _EmptyStateDictLoadPlanner
    from torch.distributed.checkpoint.state_dict_loader import _load_state_dict

    path = Path(path)
    run_state = read_run_state(path)
    # an empty state dict and this planner: every tensor is read whole, as dcp_to_torch_save does
    full: dict[str, Any] = {}
    _load_state_dict(full, storage_reader=dcp.FileSystemReader(str(path)), planner=_EmptyStateDictLoadPlanner(),
                     no_dist=True)
    return single_file_checkpoint(full["model"], full["optimizer"], run_state)
