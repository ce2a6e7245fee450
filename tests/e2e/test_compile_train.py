"""``train.compile`` end to end (inductor, CPU): compiled training gives eager's losses, a compiled run
resumes exactly from a compiled run's checkpoint, and the DINOv3 task (student, EMA teacher, Gram
teacher, heads) trains compiled with eager's losses."""

import signal

import pytest

from conftest import ROOT, TINY, assert_same_state, check, final, losses, vitlab

TINY_DINO = str(ROOT / "tests" / "configs" / "tiny_dino.py")
# inductor draws its own random numbers: no drop path (in the blocks), no mixup (in a compiled task)
NO_DROP = ["model.max_drop_path_rate=0.0", "task.mixup_alpha=0.0"]


def _close(a, b, tol=1e-4):
    assert len(a) == len(b) and all(abs(x - y) <= tol * max(1.0, abs(y)) for x, y in zip(a, b)), (a, b)


@pytest.mark.parametrize("mode", ["blocks", "true"])
def test_compiled_losses_match_eager(tmp_path, mode):
    eager, compiled = tmp_path / "eager", tmp_path / "compiled"
    steps = ["train.max_steps=3", "train.checkpoint_every=100"]
    check(vitlab("train", TINY, f"train.output_dir={eager}", *NO_DROP, *steps, "train.compile=false"))
    proc = check(vitlab("train", TINY, f"train.output_dir={compiled}", *NO_DROP, *steps, f"train.compile={mode}"))
    assert f"compile {'task' if mode == 'true' else mode}" in proc.stdout
    _close(losses(compiled), losses(eager))


def test_compiled_run_resumes_exactly(tmp_path):
    reference, run = tmp_path / "reference", tmp_path / "run"
    args = ["train.max_steps=4", "train.checkpoint_every=2", "train.compile=blocks"]  # drop path on: RNG resumes
    check(vitlab("train", TINY, f"train.output_dir={reference}", *args))
    killed = vitlab("train", TINY, f"train.output_dir={run}", *args, fault="SIGKILL@2")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    check(vitlab("train", TINY, f"train.output_dir={run}", *args, "train.resume=auto"))
    assert losses(run) == losses(reference)
    assert_same_state(final(run, 4), final(reference, 4))


def test_dino_task_compiled_blocks_match_eager(tmp_path):
    eager, compiled = tmp_path / "eager", tmp_path / "compiled"
    args = ["train.max_steps=2", "train.eval_every=null", "model.max_drop_path_rate=0.0"]
    check(vitlab("train", TINY_DINO, f"train.output_dir={eager}", *args, "train.compile=false"))
    check(vitlab("train", TINY_DINO, f"train.output_dir={compiled}", *args, "train.compile=blocks"))
    _close(losses(compiled), losses(eager))

