"""`vitlab doctor`: the measured checks of a DINO run at ln K, on constructed runs (a run's config.yaml,
its metrics.jsonl and its real data pipeline)."""

import json
import math
from pathlib import Path

import pytest
from PIL import Image

from tests.e2e.conftest import check, vitlab
from vitlab.config import apply_overrides, load_config, save_config
from vitlab.doctor import diagnose

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "configs" / "tiny_dino.py"


def make_run(tmp_path, overrides=(), *, dino_over_ln_k=1.0, blank_images=False, steps=20):
    cfg = apply_overrides(load_config(TINY), list(overrides))
    if blank_images:  # every image one gray: every crop identical
        folder = tmp_path / "images" / "blank"
        folder.mkdir(parents=True)
        for i in range(16):
            Image.new("L", (28, 28), 128).save(folder / f"{i}.png")
        cfg.data.train = {"_target_": "vitlab.data.ImageFolder", "root": str(tmp_path / "images")}
        cfg.data.train_transform.mean, cfg.data.train_transform.std = [0.5] * 3, [0.5] * 3  # it reads RGB
    run = tmp_path / "run"
    run.mkdir()
    save_config(cfg, run / "config.yaml")
    ln_k = math.log(cfg.task.dino_head.out_dim)
    rows = [{"step": s, "train/dino_loss": ln_k * (1.0 + (dino_over_ln_k - 1.0) * s / (steps - 1)),
             "train/collapse/ln_k": ln_k, "train/collapse/target_entropy": ln_k * 0.999,
             "train/grad_norm": 0.5, "train/lr": 1e-3} for s in range(steps)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run


def by_name(checks):
    return {c.check: c for c in checks}


def test_identical_crops_are_named(tmp_path):
    found, checks = diagnose(make_run(tmp_path, blank_images=True), batches=1)
    assert found.verdict == "yes"
    crops = by_name(checks)["crops flat or alike across images"]
    assert crops.verdict == "possible" and "local flat 100%" in crops.measured and "check the data" in crops.advice
    assert all(c.verdict == "no" for c in checks if c is not crops)


def test_the_teacher_temperature_of_the_control_is_named(tmp_path):
    found, checks = diagnose(make_run(tmp_path, ["task.teacher_temp.base=0.07"]), batches=1)
    temp = by_name(checks)["teacher temperature"]
    assert temp.verdict == "likely" and "0.070" in temp.measured and "task.teacher_temp=0.04" in temp.advice


def test_a_run_that_left_ln_k_gets_no_verdict(tmp_path):
    found, checks = diagnose(make_run(tmp_path, ["task.teacher_temp.base=0.07"], dino_over_ln_k=0.8), batches=1)
    assert found.verdict == "no" and all(c.verdict == "-" and not c.advice for c in checks)


def test_command_prints_the_table_and_names_bad_input(tmp_path):
    run = make_run(tmp_path, ["task.koleo_weight=0.0"])
    out = check(vitlab("doctor", str(run), "--batches", "1")).stdout
    assert "DINO loss at ln K: yes" in out and "task.koleo_weight=0.1" in out
    proc = vitlab("doctor", str(tmp_path / "nowhere"))
    assert proc.returncode == 2 and "no config.yaml" in proc.stderr


@pytest.mark.parametrize("body", ["{}"])
def test_a_run_without_dino_loss_is_an_error(tmp_path, body):
    run = make_run(tmp_path)
    (run / "metrics.jsonl").write_text(body + "\n")
    with pytest.raises(ValueError, match="train/dino_loss"):
        diagnose(run, batches=1)
