"""Non-finite losses: the step is skipped before the optimizer and the post-step hook, and the run stops."""

import math

import pytest
import torch

from vitlab.config import apply_overrides, load_config
from vitlab.engine import NonFiniteError, train
from vitlab.engine.checkpoint import list_checkpoints, load_checkpoint
from vitlab.tasks import ClassificationTask

from conftest import TINY


class NaNAtSteps(ClassificationTask):
    """Classification whose loss is NaN on the given (0-based) training steps; counts post-step hooks."""

    def __init__(self, *, nan_steps=(), **kwargs):
        super().__init__(**kwargs)
        self.nan_steps, self.calls, self.hooks = set(nan_steps), 0, []

    def training_step(self, batch):
        loss, metrics = super().training_step(batch)
        self.calls += 1
        return (loss * math.nan if self.calls - 1 in self.nan_steps else loss), metrics

    def after_optimizer_step(self, step):
        self.hooks.append(step)


def config(tmp_path, nan_steps, limit):
    cfg = load_config(TINY)
    cfg.task._target_ = f"{__name__}.NaNAtSteps"
    return apply_overrides(cfg, [f"+task.nan_steps={list(nan_steps)}", f"train.output_dir={tmp_path}",
                                 "train.max_steps=6", f"train.max_nonfinite_steps={limit}", "train.checkpoint_every=1"])


def test_skipped_steps_leave_weights_and_checkpoints_finite(tmp_path, capsys):
    train(config(tmp_path, nan_steps=[2, 3], limit=3))
    out = capsys.readouterr().out
    assert "step 2: non-finite loss" in out and "step 3: non-finite loss" in out
    ckpts = {int(p.stem.split("_")[1]): load_checkpoint(p) for p in list_checkpoints(tmp_path / "checkpoints")}
    assert set(ckpts) == {5, 6}
    for ckpt in ckpts.values():
        assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())


def test_weights_unchanged_by_a_skipped_step(tmp_path):
    cfg = config(tmp_path, nan_steps=[1], limit=3)
    cfg.train.keep_last = 10
    train(cfg)
    c1, c2 = load_checkpoint(tmp_path / "checkpoints/step_00000001.pt"), load_checkpoint(tmp_path / "checkpoints/step_00000002.pt")
    assert all(torch.equal(c1["model"][k], c2["model"][k]) for k in c1["model"])
    assert c1["optimizer"]["state"] == {} or all(
        torch.equal(torch.as_tensor(c1["optimizer"]["state"][p]["step"]), torch.as_tensor(c2["optimizer"]["state"][p]["step"]))
        for p in c1["optimizer"]["state"])


def test_stops_after_consecutive_limit(tmp_path):
    with pytest.raises(NonFiniteError, match="2 consecutive"):
        train(config(tmp_path, nan_steps=[1, 2, 3], limit=2))
