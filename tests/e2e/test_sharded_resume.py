"""Sharded checkpoints end to end: a SIGKILL inside a save leaves the previous checkpoint, and the
resumed run ends bit-identical; shards written by 2 ranks (FSDP2) resume on 1 process and shards of 1
process on 2 ranks (DDP, async saves), on the losses of an uninterrupted run; consolidation gives the
single-file checkpoint of the same run."""

import signal

import torch
from conftest import TINY, assert_same_state, check, final, losses, vitlab

from vitlab.cli import main
from vitlab.engine.checkpoint import build_model_from_checkpoint, load_checkpoint

SHARDED = "train.checkpoint_format=sharded"
# no drop path / mixup: per-rank training randomness would differ from one process's by design
DETERMINISTIC = ["model.max_drop_path_rate=0.0", "task.mixup_alpha=0.0", "train.max_steps=6", "train.checkpoint_every=2"]


def test_kill_inside_a_save_resumes_from_the_previous_one_bit_identical(reference_run, tmp_path):
    run, ckpts = tmp_path / "run", tmp_path / "run" / "checkpoints"
    killed = vitlab("train", TINY, f"train.output_dir={run}", SHARDED, fault="SIGKILL@8:save")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert (ckpts / ".tmp-step_00000008" / ".metadata").is_file()  # its shards were all written...
    assert not (ckpts / "step_00000008").exists() and (ckpts / "step_00000004").is_dir()  # ...but never committed
    resumed = check(vitlab("train", TINY, f"train.output_dir={run}", SHARDED, "train.async_checkpoint=true",
                           "train.resume=auto"))
    assert f"resumed from {str(ckpts / 'step_00000004')!r}" in resumed.stdout
    assert losses(run) == losses(reference_run)  # drop path and mixup RNGs, data position: all restored
    assert sorted(p.name for p in ckpts.iterdir()) == ["best", "step_00000004", "step_00000008"]
    out = tmp_path / "step8.pt"
    assert main(["convert", "--consolidate", str(ckpts / "step_00000008"), str(out)]) == 0
    consolidated, reference = load_checkpoint(out), final(reference_run, 8)
    assert consolidated.keys() == reference.keys()
    assert_same_state(consolidated, reference)  # the same weights and optimizer state as the full format's
    assert consolidated["data"] == reference["data"] and consolidated["step"] == 8
    rng, ref_rng = consolidated["rng"][0], reference["rng"][0]
    assert rng["python"] == ref_rng["python"] and torch.equal(rng["torch"], ref_rng["torch"])
    build_model_from_checkpoint(out)  # what vitlab eval / viz read


def test_shards_move_between_world_sizes_and_strategies(tmp_path):
    single, run = tmp_path / "single", tmp_path / "run"
    check(vitlab("train", TINY, f"train.output_dir={single}", *DETERMINISTIC))
    # steps 1-2 on 2 FSDP2 ranks, 3-4 on 1 process, 5-6 on 2 DDP ranks saving asynchronously
    fsdp = vitlab("train", TINY, f"train.output_dir={run}", *DETERMINISTIC, SHARDED, "train.strategy=fsdp",
                  fault="SIGKILL@2", torchrun=2)
    assert fsdp.returncode != 0 and (run / "checkpoints" / "step_00000002" / "__1_0.distcp").is_file()
    one = vitlab("train", TINY, f"train.output_dir={run}", *DETERMINISTIC, SHARDED, "train.resume=auto",
                 fault="SIGKILL@4")
    assert one.returncode == -signal.SIGKILL and "checkpoint saved by 2 ranks, resuming on 1" in one.stdout
    ddp = check(vitlab("train", TINY, f"train.output_dir={run}", *DETERMINISTIC, SHARDED, "train.resume=auto",
                       "train.async_checkpoint=true", torchrun=2))
    assert "checkpoint saved by 1 ranks, resuming on 2" in ddp.stdout
    a, b = losses(single), losses(run)
    assert len(a) == len(b) == 6 and all(abs(x - y) < 1e-5 for x, y in zip(a, b)), (a, b)
    out = tmp_path / "step6.pt"
    assert main(["convert", "--consolidate", str(run / "checkpoints" / "step_00000006"), str(out)]) == 0
    two, ref = load_checkpoint(out), final(single, 6)
    assert two["world_size"] == 2 and len(two["rng"]) == 2 and two["data"] == ref["data"]
    for key in ref["model"]:
        assert (two["model"][key] - ref["model"][key]).abs().max() < 1e-5, key
