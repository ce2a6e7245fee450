"""Runs that start from weights (``train.init_from``): fine-tuning and continued DINOv3 pretraining begin
exactly where the checkpoint is."""

from pathlib import Path

import torch
from conftest import ROOT, TINY, check, final, vitlab

from vitlab.engine.logging import read_metrics

TINY_DINO = str(ROOT / "tests" / "configs" / "tiny_dino.py")


def val(run_dir, step):
    return {k: v for r in read_metrics(Path(run_dir) / "metrics.jsonl") if r["step"] == step
            for k, v in r.items() if k.startswith("val/")}


def test_fine_tune_from_a_checkpoint_evaluates_at_step_0_as_the_checkpoint(reference_run, tmp_path):
    """The checkpoint's weights, head included, are what the new run evaluates before its first step; with
    train.init_freeze_steps=1 its first step leaves every loaded parameter as the file has it."""
    ckpt = reference_run / "checkpoints" / "step_00000008.pt"
    run = tmp_path / "ft"
    proc = check(vitlab("train", TINY, f"train.output_dir={run}", f"train.init_from={ckpt}", "train.eval_at_start=true",
                        "train.max_steps=1", "train.init_freeze_steps=1", "optim.lr.warmup_steps=0"))
    assert "train.init_from=" in proc.stdout and "total" in proc.stdout
    before = val(run, 0)
    assert before and before == {k: v for k, v in val(reference_run, 8).items() if k in before}
    start, after = final(reference_run, 8)["model"], final(run, 1)["model"]
    assert all(torch.equal(start[k], after[k]) for k in start)
    moved = tmp_path / "moved"
    check(vitlab("train", TINY, f"train.output_dir={moved}", f"train.init_from={ckpt}", "train.max_steps=1",
                 "optim.lr.warmup_steps=0"))
    assert not all(torch.equal(start[k], final(moved, 1)["model"][k]) for k in start)


def test_continued_pretraining_starts_from_the_checkpoints_teacher(dino_run, tmp_path):
    """Student and teacher both start as the file's teacher (and its heads load): the step-0 k-NN of the new
    run is the checkpoint's last one; a missing file is an error naming it."""
    first, second = dino_run, tmp_path / "second"
    ckpt = first / "checkpoints" / "step_00000003.pt"
    proc = check(vitlab("train", TINY_DINO, f"train.output_dir={second}", f"train.init_from={ckpt}",
                        "train.eval_at_start=true", "train.max_steps=1"))
    assert "student_dino_head" in proc.stdout and "teacher_ibot_head" in proc.stdout
    before, last = val(second, 0), val(first, 3)
    assert before["val/knn_top1"] == last["val/knn_top1"], (before, last)
    missing = vitlab("train", TINY_DINO, f"train.output_dir={tmp_path / 'x'}", f"train.init_from={tmp_path / 'nope.pt'}")
    assert missing.returncode == 2 and "train.init_from=" in missing.stderr and "nope.pt" in missing.stderr
