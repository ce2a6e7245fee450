"""Gradient accumulation: ``data.batch_size`` is the batch of one optimizer step; with
``train.grad_accum_steps=k`` it arrives as k micro-batches of B/k and must give the same update."""

from pathlib import Path

import torch

from vitlab.config import L, apply_overrides, load_config
from vitlab.engine.checkpoint import load_checkpoint
from vitlab.engine.trainer import train

TINY = Path(__file__).resolve().parents[1] / "e2e" / "tiny_fmnist.py"
DETERMINISTIC = ["task.mixup_alpha=0.0", "model.max_drop_path_rate=0.0", "train.max_steps=2", "train.log_every=1",
                 "train.checkpoint_every=2", "data.train.limit=128",
                 "optim.lr.base=0.5"]  # a large lr makes a different batch show in the weights


def final_weights(out, batch_size, accum, *overrides):
    cfg = apply_overrides(load_config(TINY), [*DETERMINISTIC, f"train.output_dir={out}", *overrides,
                                              f"data.batch_size={batch_size}", f"train.grad_accum_steps={accum}"])
    # plain SGD: Adam's first step is lr * sign(grad), which turns float rounding on near-zero
    # gradients into full-size differences
    cfg.optim.optimizer = L(torch.optim.SGD)()
    train(cfg)
    return load_checkpoint(Path(out) / "checkpoints" / "step_00000002.pt")["model"]


def test_two_micro_batches_match_one_batch(tmp_path):
    whole = final_weights(tmp_path / "whole", 32, 1)
    accumulated = final_weights(tmp_path / "accum", 32, 2)
    assert whole.keys() == accumulated.keys()
    for key in whole:
        torch.testing.assert_close(accumulated[key], whole[key], rtol=1e-4, atol=1e-5, msg=key)
    # activation checkpointing recomputes each micro-batch's blocks exactly
    checkpointed = final_weights(tmp_path / "checkpointed", 32, 2, "train.activation_checkpointing=full")
    assert all(torch.equal(checkpointed[k], accumulated[k]) for k in whole)
    # and the test can tell: a run on half the batch (the first micro-batches only) moves elsewhere
    half = final_weights(tmp_path / "half", 16, 1)
    assert any(not torch.allclose(half[k], whole[k], rtol=1e-4, atol=1e-5) for k in whole)
