"""Distillation of a frozen teacher checkpoint into an "HR" student on another patch grid: DINOv3's heads
mode (a DINOv3 teacher with its heads) and the feature mode (a bare backbone), each a tiny run whose loss falls."""

import torch

from conftest import ROOT, check, vitlab

from vitlab.engine.logging import read_metrics
from vitlab.tasks.distill import resample_patches

TINY_DISTILL = str(ROOT / "tests" / "configs" / "tiny_distill.py")


def losses_of(run_dir):
    rows = [r for r in read_metrics(run_dir / "metrics.jsonl") if "train/loss" in r]
    return [r["train/loss"] for r in rows], rows[-1]


def test_heads_mode_distils_a_dinov3_teacher(dino_run, tmp_path):
    teacher = dino_run / "checkpoints" / "step_00000003.pt"
    proc = check(vitlab("train", TINY_DISTILL, f"train.output_dir={tmp_path}", f"task.teacher={teacher}"))
    assert "distillation (heads)" in proc.stdout and "teacher" in proc.stdout
    losses, last = losses_of(tmp_path)
    assert len(losses) == 8 and sum(losses[-2:]) < sum(losses[:2]) - 0.5, losses
    assert {"train/dino_loss", "train/ibot_loss", "train/koleo_loss"} <= set(last)
    # both networks' FLOPs are in the log (the teacher on its own 7 x 7 grid, the student on 4 x 4)
    assert last["train/flops/teacher_gflops"] > last["train/flops/student_gflops"] > 0


def test_feature_mode_distils_a_bare_backbone(reference_run, tmp_path):
    teacher = reference_run / "checkpoints" / "step_00000008.pt"  # a classifier: no DINO heads
    proc = check(vitlab("train", TINY_DISTILL, f"train.output_dir={tmp_path}", f"task.teacher={teacher}"))
    assert "distillation (features)" in proc.stdout
    losses, last = losses_of(tmp_path)
    assert losses[-1] < 0.7 * losses[0], losses
    assert {"train/embed_loss", "train/patch_loss"} <= set(last)
    bad = vitlab("train", TINY_DISTILL, f"train.output_dir={tmp_path / 'bad'}", f"task.teacher={teacher}",
                 "task.mode=heads")
    assert bad.returncode == 2 and "has no DINO / iBOT teacher heads" in bad.stderr, bad.stderr
    missing = vitlab("train", TINY_DISTILL, f"train.output_dir={tmp_path / 'x'}", f"task.teacher={tmp_path / 'no.pt'}")
    assert missing.returncode == 2 and "no.pt" in missing.stderr, missing.stderr


def test_resample_patches_to_the_students_grid():
    x = torch.randn(2, 7, 7, 5)
    assert resample_patches(x, (7, 7)) is x
    y = resample_patches(x, (4, 4))
    assert y.shape == (2, 4, 4, 5)
    const = torch.ones(1, 7, 7, 3)
    assert torch.allclose(resample_patches(const, (4, 4)), torch.ones(1, 4, 4, 3))
