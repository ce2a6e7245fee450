"""``train.activation_checkpointing`` end to end: a checkpointed run (drop path and mixup on) gives the
uncheckpointed run's losses and weights bit for bit, also after a SIGKILL and a resume; so does the
DINOv3 task (student with iBOT masks, EMA teacher, heads)."""

import signal

from conftest import ROOT, TINY, assert_same_state, check, final, losses, vitlab


def test_checkpointed_run_is_bit_identical_and_resumes(reference_run, tmp_path):
    run = tmp_path / "run"
    args = [f"train.output_dir={run}", "train.activation_checkpointing=full"]
    killed = vitlab("train", TINY, *args, fault="SIGKILL@4")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert losses(run) == losses(reference_run)[:4]
    resumed = check(vitlab("train", TINY, *args, "train.resume=auto"))
    assert "activation checkpointing full" in resumed.stdout
    assert losses(run) == losses(reference_run)
    assert_same_state(final(run, 8), final(reference_run, 8))


def test_dino_task_checkpointed_is_bit_identical(dino_run, tmp_path):
    check(vitlab("train", str(ROOT / "tests" / "configs" / "tiny_dino.py"), f"train.output_dir={tmp_path}",
                 "train.activation_checkpointing=2"))
    assert losses(tmp_path) == losses(dino_run)
    assert_same_state(final(tmp_path, 3), final(dino_run, 3))


def test_bad_value_is_a_clear_error(tmp_path):
    proc = vitlab("train", TINY, f"train.output_dir={tmp_path}", "train.activation_checkpointing=every")
    assert proc.returncode != 0 and "train.activation_checkpointing" in proc.stderr and "'every'" in proc.stderr
