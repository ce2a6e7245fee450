"""Helpers for end-to-end runs in subprocesses (what a user runs, signals included)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vitlab.engine.checkpoint import load_checkpoint
from vitlab.engine.logging import read_metrics

ROOT = Path(__file__).resolve().parents[2]
TINY = str(Path(__file__).with_name("tiny_fmnist.py"))


def vitlab(*args, fault=None, timeout=300, torchrun=None):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1" if torchrun else "2")
    env.pop("VITLAB_FAULT", None)
    if fault:
        env["VITLAB_FAULT"] = fault
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={torchrun}"] \
        if torchrun else [sys.executable]
    return subprocess.run([*launcher, "-m", "vitlab", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def check(proc, code=0):
    assert proc.returncode == code, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def losses(run_dir):
    return [r["train/loss"] for r in read_metrics(Path(run_dir) / "metrics.jsonl") if "train/loss" in r]


def final(run_dir, step):
    return load_checkpoint(Path(run_dir) / "checkpoints" / f"step_{step:08d}.pt")


def assert_same_state(a, b):
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert sa.keys() == sb.keys()
    for p in sa:
        for k in sa[p]:
            assert torch.equal(torch.as_tensor(sa[p][k]), torch.as_tensor(sb[p][k])), (p, k)


@pytest.fixture(scope="session")
def reference_run(tmp_path_factory):
    """The uninterrupted 8-step tiny run (num_workers=0)."""
    out = tmp_path_factory.mktemp("reference")
    check(vitlab("train", TINY, f"train.output_dir={out}"))
    return out


@pytest.fixture(scope="session")
def dino_run(tmp_path_factory):
    """A 3-step tiny DINOv3 run (tests/configs/tiny_dino.py): a checkpoint with a teacher and its heads."""
    out = tmp_path_factory.mktemp("dino")
    check(vitlab("train", str(ROOT / "tests" / "configs" / "tiny_dino.py"), f"train.output_dir={out}"))
    return out
