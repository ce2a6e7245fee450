"""``train.compile`` end to end (inductor, CPU): compiled training gives eager's losses, a compiled run
resumes exactly from a compiled run's checkpoint, the DINOv3 task (student, EMA teacher, Gram
teacher, heads) trains compiled, per block or whole, with eager's losses, and compilation composes
with data parallelism (2 ranks, gloo): compiled blocks under FSDP2, the compiled task under DDP."""

import signal

import pytest

from conftest import ROOT, TINY, assert_same_state, check, final, losses, vitlab

TINY_DINO = str(ROOT / "tests" / "configs" / "tiny_dino.py")
# inductor draws its own random numbers: no drop path (in the blocks), no mixup (in a compiled task)
NO_DROP = ["model.max_drop_path_rate=0.0", "task.mixup_alpha=0.0"]


def _close(a, b, tol=1e-4):
    assert len(a) == len(b) and all(abs(x - y) <= tol * max(1.0, abs(y)) for x, y in zip(a, b)), (a, b)


@pytest.mark.parametrize("mode, checkpointing", [("blocks", "full"), ("true", "2")])  # uncheckpointed: the DINO test
def test_compiled_losses_match_eager(tmp_path, mode, checkpointing):
    """Activation checkpointing composes: a checkpointed block runs compiled inside its checkpoint
    (blocks), or dynamo traces the checkpoint (the whole task)."""
    eager, compiled = tmp_path / "eager", tmp_path / "compiled"
    steps = ["train.max_steps=3", "train.checkpoint_every=100"]
    check(vitlab("train", TINY, f"train.output_dir={eager}", *NO_DROP, *steps, "train.compile=false"))
    proc = check(vitlab("train", TINY, f"train.output_dir={compiled}", *NO_DROP, *steps, f"train.compile={mode}",
                        f"train.activation_checkpointing={checkpointing}"))
    assert f"compile {'task' if mode == 'true' else mode}, activation checkpointing {checkpointing}" in proc.stdout
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


def test_dino_task_compiled_matches_eager(tmp_path, monkeypatch):
    """Per block and as a whole, with Gram anchoring from step 0 and a teacher-temperature warmup.
    Compiled whole, the step compiles once: each batch has new iBOT masks but as many of them,
    selected by index, and each step a new teacher temperature, a tensor input (blocks, in contrast,
    compile once per crop size, mode and grad setting)."""
    monkeypatch.setenv("TORCH_LOGS", "recompiles")
    args = ["train.max_steps=3", "train.eval_every=null", "model.max_drop_path_rate=0.0",
            "task.gram.start_step=0", "task.gram.load_step=0",
            "task.teacher_temp.warmup_start=0.02", "task.teacher_temp.warmup_steps=3"]
    check(vitlab("train", TINY_DINO, f"train.output_dir={tmp_path / 'eager'}", *args, "train.compile=false"))
    for mode in ("blocks", "true"):
        proc = check(vitlab("train", TINY_DINO, f"train.output_dir={tmp_path / mode}", *args,
                            f"train.compile={mode}"))
        _close(losses(tmp_path / mode), losses(tmp_path / "eager"))
    assert "Recompiling" not in proc.stderr, proc.stderr[-3000:]  # proc: the compile=true run


def test_two_ranks_compiled_fsdp2_and_ddp_match_eager_and_resume(tmp_path):
    """``compile=blocks`` + ``strategy=fsdp`` (blocks compiled, then each sharded, then the root) and
    ``compile=true`` + ``strategy=ddp`` (DDP wraps the compiled task) on 2 ranks give one eager
    process's losses at the same global batch, with every block checkpointed; the FSDP2 run, stopped by SIGTERM after step 2
    (checkpoint at step 3), resumes from its checkpoint to the same losses."""
    eager, fsdp, ddp = tmp_path / "eager", tmp_path / "fsdp", tmp_path / "ddp"
    args = [*NO_DROP, "train.max_steps=4", "train.checkpoint_every=100"]
    check(vitlab("train", TINY, f"train.output_dir={eager}", *args, "train.compile=false"))
    fsdp_args = [f"train.output_dir={fsdp}", *args, "train.strategy=fsdp", "train.compile=blocks",
                 "train.activation_checkpointing=full"]  # checkpointing, then compile, then FSDP2
    stopped = check(vitlab("train", TINY, *fsdp_args, fault="SIGTERM@2", torchrun=2))
    assert "compile blocks" in stopped.stdout and "SIGTERM: saved a checkpoint at step 3" in stopped.stdout
    assert final(fsdp, 3)["world_size"] == 2 and len(losses(fsdp)) == 3
    resumed = check(vitlab("train", TINY, *fsdp_args, "train.resume=auto", torchrun=2))
    assert "resumed from" in resumed.stdout
    _close(losses(fsdp), losses(eager))
    check(vitlab("train", TINY, f"train.output_dir={ddp}", *args, "train.compile=true",
                 "train.activation_checkpointing=1", torchrun=2))
    _close(losses(ddp), losses(eager))
