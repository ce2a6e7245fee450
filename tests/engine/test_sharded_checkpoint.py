"""Sharded (DCP) checkpoints in one process: layout, atomic commit, load, consolidation, discovery and
retention beside single-file checkpoints, async snapshots, and the errors for bad input."""

import signal
import threading

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn
from torch.distributed.checkpoint.filesystem import _FileSystemWriter
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

from vitlab.cli import main
from vitlab.config import TrainConfig
from vitlab.engine.checkpoint import (CheckpointManager, StateDictMismatchError, build_model_from_checkpoint,
                                      latest_checkpoint, list_checkpoints, load_checkpoint, save_atomic)
from vitlab.engine.distributed import DistInfo
from vitlab.engine.faults import Faults
from vitlab.engine.init_from import read_pretrained
from vitlab.engine.resume import Checkpointer, find_resume_path
from vitlab.engine.sharded import ShardedWriter, consolidate, load_sharded

FULL_KEYS = {"format_version", "model", "task", "optimizer", "scaler", "step", "data", "rng", "best", "world_size",
             "config"}


class Counter(nn.Module):
    """Non-tensor state saved with the weights (as the Gram teacher's refresh count)."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def get_extra_state(self) -> dict:
        return {"count": self.count}

    def set_extra_state(self, state: dict) -> None:
        self.count = state["count"]


class Task(nn.Module):
    """A task in miniature: the network under ``model``, a head, a buffer and extra state beside it."""

    def __init__(self, width: int = 3, extra: bool = False):
        super().__init__()
        self.model = nn.Linear(2, width)
        self.head = nn.Linear(width, 2)
        self.register_buffer("center", torch.zeros(2))
        self.counter = Counter()
        if extra:
            self.register_buffer("extra", torch.zeros(1))


def trained(seed: int = 0, **kwargs) -> tuple[Task, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    task = Task(**kwargs)
    optimizer = torch.optim.AdamW([{"params": task.model.parameters()},
                                   {"params": task.head.parameters(), "weight_decay": 0.0}], lr=1e-2)
    task.head(task.model(torch.randn(4, 2))).sum().backward()
    optimizer.step()
    task.center.fill_(float(seed))
    task.counter.count = seed
    return task, optimizer


def shards(task: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    model_sd, optim_sd = get_state_dict(task, optimizer, options=StateDictOptions(full_state_dict=False))
    return {"model": model_sd, "optimizer": optim_sd}


def run_state(step: int) -> dict:
    return {"format_version": 1, "scaler": {}, "step": step, "data": {"epoch": 0, "batch": step},
            "rng": [{"torch": torch.get_rng_state()}], "best": {"value": None}, "world_size": 1,
            "config": "model: {}\n"}


def writer(folder, keep_last: int = 2, **kwargs) -> ShardedWriter:
    return ShardedWriter(CheckpointManager(folder, keep_last=keep_last), DistInfo(), **kwargs)


def assert_same(task_a, opt_a, task_b, opt_b):
    assert task_a.state_dict().keys() == task_b.state_dict().keys()
    for (k, a), b in zip(task_a.state_dict().items(), task_b.state_dict().values()):
        assert torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b, k
    sa, sb = opt_a.state_dict()["state"], opt_b.state_dict()["state"]
    assert sa.keys() == sb.keys()
    for p in sa:
        for k in sa[p]:
            assert torch.equal(sa[p][k], sb[p][k]), (p, k)


def test_save_load_and_consolidate(tmp_path):
    task, optimizer = trained(0)
    writer(tmp_path).save(shards(task, optimizer), run_state(3), 3)
    step = tmp_path / "step_00000003"
    assert sorted(p.name for p in step.iterdir()) == [".metadata", "__0_0.distcp", "run_state.pt"]
    assert [p.name for p in tmp_path.iterdir()] == ["step_00000003"]  # the temporary was renamed
    fresh, fresh_opt = trained(1)
    assert fresh.counter.count == 1
    state = load_sharded(step, fresh, fresh_opt)
    assert state["step"] == 3 and state["data"] == {"epoch": 0, "batch": 3}
    assert_same(task, optimizer, fresh, fresh_opt)
    assert fresh.counter.count == 0
    # consolidated: the single-file layout, keyed as a full gather of the same objects keys it
    ckpt = consolidate(step)
    assert set(ckpt) == FULL_KEYS
    full_model, full_optim = get_state_dict(task, optimizer, options=StateDictOptions(full_state_dict=True))
    assert ckpt["model"].keys() == {"weight", "bias"}
    assert ckpt["task"].keys() == {"head.weight", "head.bias", "center", "counter._extra_state"}
    assert ckpt["task"]["counter._extra_state"] == {"count": 0}
    for k, v in full_model.items():
        if isinstance(v, torch.Tensor):
            assert torch.equal(ckpt["model"][k[len("model."):]] if k.startswith("model.") else ckpt["task"][k], v), k
    assert ckpt["optimizer"]["param_groups"] == full_optim["param_groups"]
    for fqn, slots in full_optim["state"].items():
        for k, v in slots.items():
            assert torch.equal(ckpt["optimizer"]["state"][fqn][k], v), (fqn, k)


def test_kill_before_commit_keeps_the_previous_checkpoint(tmp_path):
    folder = tmp_path / "checkpoints"
    task, optimizer = trained(0)
    w = writer(folder)
    w.save(shards(task, optimizer), run_state(1), 1)

    def killed():
        raise KeyboardInterrupt("killed between the writes and the rename")

    with pytest.raises(KeyboardInterrupt):
        w.save(shards(task, optimizer), run_state(2), 2, before_commit=killed)
    assert (folder / ".tmp-step_00000002" / ".metadata").is_file()  # every shard written, yet...
    assert [p.name for p in list_checkpoints(folder)] == ["step_00000001"]  # ...not a checkpoint
    assert find_resume_path("auto", tmp_path) == folder / "step_00000001"
    w.save(shards(task, optimizer), run_state(2), 2)  # the next try clears the leftover
    assert sorted(p.name for p in folder.iterdir()) == ["step_00000001", "step_00000002"]


def test_both_formats_listed_by_step_pruned_and_best(tmp_path):
    manager = CheckpointManager(tmp_path, keep_last=2)
    w = ShardedWriter(manager, DistInfo())
    task, optimizer = trained(0)
    for step in range(1, 12):
        task.center.fill_(float(step))
        if step % 2:  # odd steps: a file, even steps: a directory
            manager.save({"model": {"w": torch.full((1,), float(step))}}, step, is_best=step == 3)
        else:
            w.save(shards(task, optimizer), run_state(step), step, is_best=step == 8)
        if step == 10:  # numeric order across both kinds: step_9.pt < step_10/
            assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000009.pt", "step_00000010"]
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000010", "step_00000011.pt"]
    assert latest_checkpoint(tmp_path).name == "step_00000011.pt"
    assert not (tmp_path / "step_00000008").exists()  # pruned; its files live on in best/
    assert torch.equal(consolidate(tmp_path / "best")["task"]["center"], torch.full((2,), 8.0))
    assert torch.equal(load_checkpoint(tmp_path / "best.pt")["model"]["w"], torch.full((1,), 3.0))
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no leftovers


def test_same_step_saved_again_replaces_it(tmp_path):
    w = writer(tmp_path)
    for seed in (0, 1):
        task, optimizer = trained(seed)
        w.save(shards(task, optimizer), run_state(4), 4)
    fresh, fresh_opt = trained(2)
    load_sharded(tmp_path / "step_00000004", fresh, fresh_opt)
    assert_same(task, optimizer, fresh, fresh_opt)


def test_refuses_non_finite(tmp_path):
    task, optimizer = trained(0)
    task.head.bias.data[0] = float("nan")
    with pytest.raises(ValueError, match="non-finite.*model.head.bias"):
        writer(tmp_path).save(shards(task, optimizer), run_state(1), 1)
    assert not list(tmp_path.iterdir())


def test_mismatched_shards_name_the_directory_and_keys(tmp_path):
    task, optimizer = trained(0)
    writer(tmp_path).save(shards(task, optimizer), run_state(1), 1)
    other, other_opt = trained(0, width=5, extra=True)
    with pytest.raises(StateDictMismatchError) as err:
        load_sharded(tmp_path / "step_00000001", other, other_opt)
    msg = str(err.value)
    assert "step_00000001" in msg and "does not match the configured model and task" in msg
    assert "missing keys (1): extra" in msg
    assert "model.weight: checkpoint (3, 2) vs model (5, 2)" in msg and "head.weight: checkpoint (2, 3)" in msg


def test_async_save_snapshots_the_state_and_commits(tmp_path, monkeypatch):
    release = threading.Event()
    write_data = _FileSystemWriter.write_data

    def held_write(self, *args, **kwargs):  # the writer thread waits until the test has changed the weights
        assert release.wait(30)
        return write_data(self, *args, **kwargs)

    monkeypatch.setattr(_FileSystemWriter, "write_data", held_write)
    task, optimizer = trained(0)
    expected = {k: v.clone() for k, v in task.state_dict().items() if isinstance(v, torch.Tensor)}
    w = writer(tmp_path, async_save=True)
    w.save(shards(task, optimizer), run_state(5), 5)
    assert not (tmp_path / "step_00000005").exists()  # still writing: not a checkpoint yet
    with torch.no_grad():
        for p in task.parameters():
            p.add_(1.0)  # training goes on meanwhile
    release.set()
    w.wait()
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000005"]
    fresh, fresh_opt = trained(1)
    load_sharded(tmp_path / "step_00000005", fresh, fresh_opt)
    for k, v in expected.items():
        assert torch.equal(fresh.state_dict()[k], v), k


def test_a_directory_where_a_file_is_expected_and_the_reverse(tmp_path, capsys):
    task, optimizer = trained(0)
    writer(tmp_path).save(shards(task, optimizer), run_state(1), 1)
    step = tmp_path / "step_00000001"
    hint = "is a sharded checkpoint directory; consolidate it with `vitlab convert --consolidate"
    for read in (load_checkpoint, build_model_from_checkpoint, read_pretrained):
        with pytest.raises(ValueError, match=hint) as err:
            read(step)
        assert str(step) in str(err.value)
    assert find_resume_path(str(step), tmp_path) == step  # train.resume takes the directory itself
    file = save_atomic({"model": {}}, tmp_path / "one.pt")
    assert main(["convert", "--consolidate", str(file), str(tmp_path / "out.pt")]) == 2
    assert "'" + str(file) + "' is a single-file checkpoint, not a sharded checkpoint directory" in capsys.readouterr().err
    assert main(["convert", "--consolidate", str(tmp_path), str(tmp_path / "out.pt")]) == 2  # no .metadata
    assert "is not a vitlab sharded checkpoint directory" in capsys.readouterr().err
    assert main(["convert", "--consolidate", str(step), str(tmp_path / "out.pt")]) == 0
    assert set(load_checkpoint(tmp_path / "out.pt")) == FULL_KEYS


@pytest.mark.parametrize(("fmt", "asynchronous", "message"), [
    ("bogus", False, "train.checkpoint_format must be one of full, sharded, got 'bogus'"),
    ("full", True, "train.async_checkpoint=true needs train.checkpoint_format=sharded"),
])
def test_bad_checkpoint_settings(tmp_path, fmt, asynchronous, message):
    cfg = OmegaConf.create({"train": OmegaConf.structured(TrainConfig(checkpoint_format=fmt,
                                                                      async_checkpoint=asynchronous))})
    with pytest.raises(ValueError, match=message):
        Checkpointer(tmp_path, cfg, DistInfo())


def test_fault_inside_the_save(monkeypatch):
    sent = []
    monkeypatch.setattr("vitlab.engine.faults.os.kill", lambda pid, sig: sent.append(sig))
    monkeypatch.setenv("VITLAB_FAULT", "SIGKILL@8:save")
    faults = Faults.from_env()
    faults.maybe_fire(8)  # not after the step...
    faults.maybe_fire_in_save(4)
    assert sent == []
    faults.maybe_fire_in_save(8)  # ...inside its save
    assert sent == [signal.SIGKILL]
    for bad in ("WAIT@8:save", "SIGKILL@8:load"):
        monkeypatch.setenv("VITLAB_FAULT", bad)
        with pytest.raises(ValueError, match="SIGKILL@4:save"):
            Faults.from_env()
