"""``launch.launcher=slurm`` against a real one-node Slurm (``tools/slurm_local.sh``, the ``slurm`` fixture):
a 2-task job matches one process, a job stopped mid-run comes back bit-identical, bad input is named."""

import os
import re
import subprocess
import sys
import time

import pytest
import yaml

from conftest import ROOT, TINY, assert_same_state, check, final, losses, vitlab

from vitlab.slurm.jobs import job_state

SLURM = ["launch.launcher=slurm", "launch.cpus_per_task=1"]
DETERMINISTIC = ["model.max_drop_path_rate=0.0", "task.mixup_alpha=0.0", "train.max_steps=4"]


def job_id(proc) -> str:
    return re.search(r"submitted job (\S+)", proc.stdout).group(1)


def wait_for_line(path, text, timeout=180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text(errors="replace"):
            return
        time.sleep(0.3)
    raise AssertionError(f"{text!r} not in {path} after {timeout} s:\n{path.read_text() if path.exists() else ''}")


def wait_until_ended(job, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = job_state(job)
        if state.ended:
            return state
        time.sleep(1)
    raise AssertionError(f"job {job} still {job_state(job).state} after {timeout} s")


def test_two_task_job_trains_like_one_process(slurm, tmp_path):
    """One task per rank (gloo), ranks from Slurm's environment (no torchrun): the losses of one local
    process at the same global batch; the resolved config records the job id."""
    single, job = tmp_path / "single", tmp_path / "job"
    check(vitlab("train", TINY, f"train.output_dir={single}", *DETERMINISTIC))
    proc = check(vitlab("train", TINY, f"train.output_dir={job}", *DETERMINISTIC, *SLURM, "launch.tasks_per_node=2",
                        "--wait"))
    assert "world size 2" in proc.stdout and "COMPLETED" in proc.stdout
    a, b = losses(single), losses(job)
    assert len(a) == len(b) == 4
    assert all(abs(x - y) < 1e-5 for x, y in zip(a, b)), (a, b)
    assert final(job, 4)["world_size"] == 2
    assert yaml.safe_load((job / "config.yaml").read_text())["launch"]["job_id"] == job_id(proc)


@pytest.mark.parametrize("stop", ["scontrol requeue", "time limit"])
def test_a_job_stopped_mid_run_comes_back_bit_identical(slurm, reference_run, tmp_path, stop):
    """``scontrol requeue`` (SIGTERM; Slurm requeues the job) and a real time limit (2 minutes: Slurm's timer
    sends SIGUSR2 ``launch.signal_delay_s`` before it, through submitit's ``--signal``; the job requeues
    itself): the rank stops at the next step boundary, the checkpoint is written, the job comes back,
    resumes, and ends with every tensor of the uninterrupted run's final checkpoint."""
    run = tmp_path / "run"
    # Slurm's timer may signal up to 60 s before the time asked: 2 min less 45 s puts the signal 15 to 75 s
    # into the job, after its start-up
    limit = ["launch.time_min=2", "launch.signal_delay_s=45"] if stop == "time limit" else []
    proc = check(vitlab("train", TINY, f"train.output_dir={run}", *SLURM, *limit, fault="WAIT@3"))
    job = job_id(proc)
    log = run / "slurm" / f"{job}_0_log.out"
    wait_for_line(log, "holding after step 3")
    if stop == "scontrol requeue":
        subprocess.run(["scontrol", "requeue", job], check=True, capture_output=True)
    state = wait_until_ended(job)
    text = log.read_text()
    assert state.state == "COMPLETED" and state.restarts >= 1, (state, text)
    assert "saved a checkpoint at step 4 and stopped" in text and "resumed from" in text
    if stop == "time limit":  # Slurm's signal, caught at a step boundary, then submitit's requeue
        assert "SIGUSR2: saved a checkpoint" in text and "requeueing (requeue 1 of at most 3)" in text
        assert "this job is timed-out" in (run / "slurm" / f"{job}_0_log.err").read_text()
    assert_same_state(final(run, 8), final(reference_run, 8))


def test_no_requeue_past_max_requeues_and_a_failed_job_says_why(slurm, tmp_path):
    run = tmp_path / "run"
    proc = check(vitlab("train", TINY, f"train.output_dir={run}", *SLURM, "launch.max_requeues=0", fault="WAIT@3"))
    job = job_id(proc)
    wait_for_line(run / "slurm" / f"{job}_0_log.out", "holding after step 3")
    subprocess.run(["scancel", "--signal=USR2", job], check=True)
    state = wait_until_ended(job)
    assert state.state == "FAILED" and state.restarts == 0
    assert "not requeued" in (run / "slurm" / f"{job}_0_log.err").read_text()
    assert (run / "checkpoints" / "step_00000004.pt").exists()  # the stop still checkpointed
    # a job that fails for another reason is not requeued; --wait prints why and exits 1
    bad = vitlab("train", TINY, f"train.output_dir={tmp_path / 'bad'}", *SLURM, "model.layer_pattern=HX", "--wait")
    assert bad.returncode == 1 and "FAILED" in bad.stdout and "layer_pattern" in bad.stdout, bad.stdout[-2000:]
    assert job_state(job_id(bad)).restarts == 0


@pytest.mark.parametrize("override, message", [
    ("launch.nodes=0", "launch.nodes=0: must be at least 1"),
    ("launch.launcher=pbs", "launch.launcher='pbs': must be one of local, slurm"),
])
def test_bad_launch_fields_are_named(override, message, tmp_path):
    proc = vitlab("train", TINY, f"train.output_dir={tmp_path}", "launch.launcher=slurm", override)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr


def test_an_unknown_partition_is_named(slurm, tmp_path):
    proc = vitlab("train", TINY, f"train.output_dir={tmp_path}", *SLURM, "launch.partition=gpu-h100")
    assert proc.returncode == 2 and "launch.partition='gpu-h100': no such Slurm partition" in proc.stderr
    assert "debug" in proc.stderr, proc.stderr


def test_no_reachable_slurm_and_no_submitit_are_named(tmp_path):
    args = ["train", TINY, f"train.output_dir={tmp_path}", "launch.launcher=slurm"]
    env = dict(os.environ, PYTHONPATH=str(ROOT), PATH="/nonexistent")
    proc = subprocess.run([sys.executable, "-m", "vitlab", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    assert proc.returncode == 2 and "launch.launcher='slurm', but no Slurm is reachable" in proc.stderr, proc.stderr
    hide = f"import sys; sys.modules['submitit'] = None; from vitlab.cli import main; sys.exit(main({args!r}))"
    proc = subprocess.run([sys.executable, "-c", hide], cwd=ROOT, env=env, capture_output=True, text=True)
    assert proc.returncode == 2 and "needs submitit, which is not installed" in proc.stderr, proc.stderr
