"""Exact resume: stopped at step N (SIGKILL / SIGTERM) and resumed to 2N == uninterrupted 2N, bit for bit."""

import signal


from conftest import TINY, assert_same_state, check, final, losses, vitlab


def test_same_seed_twice_and_sigkill_resume(reference_run, tmp_path):
    run = tmp_path / "run"
    killed = vitlab("train", TINY, f"train.output_dir={run}", fault="SIGKILL@4")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert losses(run) == losses(reference_run)[:4]  # same seed, separate process: identical losses
    check(vitlab("train", TINY, f"train.output_dir={run}", "train.resume=auto"))
    assert losses(run) == losses(reference_run)
    assert_same_state(final(run, 8), final(reference_run, 8))


def test_sigterm_saves_and_resumes_with_workers(reference_run, tmp_path):
    run = tmp_path / "run"
    # SIGTERM after step 2 is seen by the next step's rank agreement: step 3 is saved (not a
    # checkpoint_every multiple, so the handler wrote it) and the run stops
    stopped = check(vitlab("train", TINY, f"train.output_dir={run}", "data.num_workers=2", fault="SIGTERM@2"))
    assert "SIGTERM" in stopped.stdout and (run / "checkpoints" / "step_00000003.pt").exists()
    assert not (run / "checkpoints" / "step_00000004.pt").exists()
    check(vitlab("train", TINY, f"train.output_dir={run}", "data.num_workers=2",
                 f"train.resume={run}/checkpoints/step_00000003.pt"))
    assert losses(run) == losses(reference_run)
    assert_same_state(final(run, 8), final(reference_run, 8))


def test_missing_resume_path_is_an_error(tmp_path):
    proc = vitlab("train", TINY, f"train.output_dir={tmp_path}", f"train.resume={tmp_path}/nope.pt")
    assert proc.returncode != 0 and "nope.pt" in proc.stderr


def test_mismatched_model_fails_loudly(reference_run, tmp_path):
    proc = vitlab("train", TINY, f"train.output_dir={tmp_path}", "model.dim=48",
                  f"train.resume={reference_run}/checkpoints/step_00000008.pt")
    assert proc.returncode != 0 and "does not match the configured model" in proc.stderr
    assert "shape mismatches" in proc.stderr
