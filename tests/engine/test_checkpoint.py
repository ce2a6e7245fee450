import os

import pytest
import torch
from torch import nn

from vitlab.engine.checkpoint import (CheckpointManager, latest_checkpoint, list_checkpoints, load_checkpoint,
                                      load_model_state, save_atomic)
from vitlab.engine.rng import get_rng_state, set_rng_state


def state(value=1.0):
    return {"model": {"w": torch.full((3,), value)}, "config": "model: {}\n", "step": 1,
            "rng": [get_rng_state()]}


def test_roundtrip_weights_only(tmp_path):
    path = save_atomic(state(), tmp_path / "step_00000001.pt")
    ckpt = load_checkpoint(path)
    assert torch.equal(ckpt["model"]["w"], torch.ones(3)) and ckpt["config"] == "model: {}\n"


def test_rng_state_roundtrip_through_checkpoint(tmp_path):
    import random

    import numpy as np

    save_atomic(state(), tmp_path / "c.pt")
    expected = (random.random(), np.random.rand(), torch.rand(2))
    set_rng_state(load_checkpoint(tmp_path / "c.pt")["rng"][0])
    assert (random.random(), np.random.rand()) == expected[:2] and torch.equal(torch.rand(2), expected[2])


def test_crash_mid_save_keeps_previous(tmp_path, monkeypatch):
    manager = CheckpointManager(tmp_path, keep_last=2)
    manager.save(state(1.0), 1)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        manager.save(state(2.0), 2)
    monkeypatch.undo()
    assert latest_checkpoint(tmp_path).name == "step_00000001.pt"
    assert [p.name for p in tmp_path.iterdir()] == ["step_00000001.pt"]  # no temporary left behind
    # a stray temporary (from a SIGKILL mid-write) is never discovered
    (tmp_path / ".tmp-123-step_00000009.pt").write_bytes(b"partial")
    assert latest_checkpoint(tmp_path).name == "step_00000001.pt"


def test_keep_last_and_best(tmp_path):
    manager = CheckpointManager(tmp_path, keep_last=2)
    for step in range(1, 6):
        manager.save(state(float(step)), step, is_best=step == 2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000004.pt", "step_00000005.pt"]
    assert torch.equal(load_checkpoint(tmp_path / "best.pt")["model"]["w"], torch.full((3,), 2.0))


def test_refuses_non_finite(tmp_path):
    with pytest.raises(ValueError, match="non-finite.*model.w"):
        CheckpointManager(tmp_path).save({"model": {"w": torch.tensor([1.0, float("nan")])}}, 1)
    assert not list(tmp_path.iterdir())


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_checkpoint(tmp_path / "nope.pt")


def test_mismatched_model_names_keys():
    model = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 4))
    bad = {"0.weight": torch.zeros(3, 2), "0.bias": torch.zeros(3), "1.weight": torch.zeros(5, 3), "extra": torch.zeros(1)}
    with pytest.raises(ValueError) as err:
        load_model_state(model, bad)
    msg = str(err.value)
    assert "missing keys (1): 1.bias" in msg and "unexpected keys (1): extra" in msg
    assert "1.weight: checkpoint (5, 3) vs model (4, 3)" in msg and "does not match the configured model" in msg


def test_atomic_write_leaves_no_tmp(tmp_path):
    save_atomic({"model": {}}, tmp_path / "a.pt")
    assert os.listdir(tmp_path) == ["a.pt"]
