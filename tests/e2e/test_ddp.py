"""DDP on CPU (gloo) through torchrun: same losses as one process at the same global batch; 2-rank checkpoints resume on 1."""

import shutil

import pytest

from conftest import TINY, check, final, losses, vitlab

# no drop path / mixup: per-rank training randomness would differ from one process's by design
DETERMINISTIC = ["model.max_drop_path_rate=0.0", "task.mixup_alpha=0.0", "train.max_steps=4"]


@pytest.mark.skipif(shutil.which("true") is None, reason="needs a POSIX shell environment")
def test_two_ranks_match_one_and_resume_on_one(tmp_path):
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    check(vitlab("train", TINY, f"train.output_dir={single}", *DETERMINISTIC))
    check(vitlab("train", TINY, f"train.output_dir={ddp}", *DETERMINISTIC, torchrun=2))
    a, b = losses(single), losses(ddp)
    assert len(a) == len(b) == 4
    assert all(abs(x - y) < 1e-5 for x, y in zip(a, b)), (a, b)
    assert final(ddp, 4)["world_size"] == 2 and len(final(ddp, 4)["rng"]) == 2
    resumed = check(vitlab("train", TINY, f"train.output_dir={ddp}", *DETERMINISTIC[:2], "train.max_steps=6",
                           "train.resume=auto"))
    assert "resumed from" in resumed.stdout and "saved by 2 ranks" in resumed.stdout
    assert [r for r in losses(ddp)][:4] == b and len(losses(ddp)) == 6


def test_fsdp2_two_ranks_match_one_and_resume_on_one(tmp_path):
    """``train.strategy=fsdp`` (FSDP2 ``fully_shard`` per block, gloo on CPU): same losses, and its
    gathered full checkpoint resumes in a single process."""
    single, fsdp = tmp_path / "single", tmp_path / "fsdp"
    check(vitlab("train", TINY, f"train.output_dir={single}", *DETERMINISTIC))
    check(vitlab("train", TINY, f"train.output_dir={fsdp}", *DETERMINISTIC, "train.strategy=fsdp",
                 "train.eval_at_start=true", torchrun=2))  # evaluation before any forward: the lazy-init path
    a, b = losses(single), losses(fsdp)
    assert len(a) == len(b) == 4
    assert all(abs(x - y) < 1e-5 for x, y in zip(a, b)), (a, b)
    one, two = final(single, 4), final(fsdp, 4)
    assert one["model"].keys() == two["model"].keys()
    for key in one["model"]:
        assert (one["model"][key] - two["model"][key]).abs().max() < 1e-5, key
    resumed = check(vitlab("train", TINY, f"train.output_dir={fsdp}", *DETERMINISTIC[:2], "train.max_steps=6",
                           "train.resume=auto"))
    assert "resumed from" in resumed.stdout and len(losses(fsdp)) == 6
