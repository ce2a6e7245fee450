"""`vitlab doctor`: the measured checks of a DINO run at ln K, on constructed runs (a run's config.yaml,
its metrics.jsonl and its real data pipeline)."""

import json
import math
from pathlib import Path

import pytest
import torch
from PIL import Image

from tests.e2e.conftest import check, vitlab
from vitlab.config import apply_overrides, instantiate, load_config, save_config
from vitlab.doctor import diagnose, views_and_targets

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "configs" / "tiny_dino.py"


def make_run(tmp_path, overrides=(), *, dino_over_ln_k=1.0, blank_images=False, steps=20, config=TINY):
    cfg = apply_overrides(load_config(config), list(overrides))
    if blank_images:  # every image one gray: every crop identical
        folder = tmp_path / "images" / "blank"
        folder.mkdir(parents=True)
        for i in range(16):
            Image.new("L", (28, 28), 128).save(folder / f"{i}.png")
        cfg.data.train = {"_target_": "vitlab.data.ImageFolder", "root": str(tmp_path / "images")}
        cfg.data.train_transform.mean, cfg.data.train_transform.std = [0.5] * 3, [0.5] * 3  # it reads RGB
        cfg.model.in_channels = 3
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
    assert by_name(checks)["DINO head"].measured == "no checkpoint in the run directory"
    # the tiny run's views are DINOv3's defaults, which the scenes' controls name (test_the_old_scenes_recipe_is_named)
    assert all(c.verdict in ("no", "-") for c in checks
               if c is not crops and c.check not in ("first targets", "views and targets"))


def test_flat_first_targets_are_named(tmp_path):
    """A teacher temperature of 1 flattens the random-init teacher's first targets (and is itself named)."""
    found, checks = diagnose(make_run(tmp_path, ["task.teacher_temp.base=1.0"]), batches=1)
    first = by_name(checks)["first targets"]
    assert first.verdict == "possible" and "at teacher_temp 1.000" in first.measured and "task.teacher_temp.base=0.02" in first.advice
    assert "target entropy 0.9" in first.measured or "target entropy 1.000" in first.measured
    (tmp_path / "sharp").mkdir()
    _, sharp = diagnose(make_run(tmp_path / "sharp"), batches=1)
    assert by_name(sharp)["first targets"].verdict == "no"


def test_a_head_that_outputs_one_distribution_is_named(tmp_path):
    """The run's last checkpoint with a teacher DINO head whose bottleneck is one vector for every image:
    its targets are uniform where a fresh head's on the same backbone are not."""
    run = make_run(tmp_path)
    cfg = load_config(run / "config.yaml")
    task = instantiate(cfg.task, model=cfg.model)
    last = task.teacher_dino_head.mlp[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.normal_()
    (run / "checkpoints").mkdir()
    torch.save({"task": task.state_dict(), "model": task.model.state_dict(), "step": 19},
               run / "checkpoints" / "step_00000019.pt")
    head = by_name(diagnose(run, batches=1)[1])["DINO head"]
    assert head.verdict == "possible", head.measured
    assert "target entropy 1.000 ln K from the trained teacher head" in head.measured
    assert "bottleneck cosine between images 1.000" in head.measured


def test_prototypes_turned_away_from_the_bottleneck_show_as_no_logit_spread(tmp_path):
    """A teacher head whose prototypes are all orthogonal to its (one) bottleneck direction gives the same
    logit for every prototype: spread 0 where a fresh head's is not."""
    run = make_run(tmp_path)
    cfg = load_config(run / "config.yaml")
    task = instantiate(cfg.task, model=cfg.model)
    head = task.teacher_dino_head
    last = head.last_layer
    directions = last.parametrizations.weight.original1 if hasattr(last, "parametrizations") else last.weight
    with torch.no_grad():
        head.mlp[-1].weight.zero_()
        head.mlp[-1].bias.zero_()
        head.mlp[-1].bias[0] = 1.0  # every bottleneck is e_0
        directions[:, 0] = 0.0  # every prototype is orthogonal to e_0
    (run / "checkpoints").mkdir()
    torch.save({"task": task.state_dict(), "model": task.model.state_dict(), "step": 19},
               run / "checkpoints" / "step_00000019.pt")
    measured = by_name(diagnose(run, batches=1)[1])["DINO head"].measured
    assert "logit spread over the prototypes (std) 0.0000 trained" in measured, measured
    fresh = float(measured.split(" trained, ")[1].split(" fresh")[0])
    assert fresh > 0.01, measured


def test_the_teacher_temperature_of_the_control_is_named(tmp_path):
    found, checks = diagnose(make_run(tmp_path, ["task.teacher_temp.base=0.07"]), batches=1)
    temp = by_name(checks)["teacher temperature"]
    assert temp.verdict == "likely" and "0.070" in temp.measured and "task.teacher_temp=0.04" in temp.advice


SCENES = ROOT / "experiments" / "dinov3_scenes.py"
# the scenes preset before its fix: the small-budget recipe's views and targets (DINOv3's crops, masks and temperature)
OLD_SCENES = ["data.train_transform.global_crops_scale=[0.32,1.0]", "data.train_transform.local_crops_scale=[0.05,0.32]",
              "data.collate.masker.mask_probability=0.5", "task.teacher_temp.base=0.04"]
SCENES_FIX = ["data.train_transform.global_crops_scale=[0.9,1.0]", "task.teacher_temp.base=0.02",
              "data.collate.masker.mask_probability=0.25", "data.train_transform.local_crops_scale=[0.4,0.8]"]


def test_the_old_scenes_recipe_is_named(tmp_path):
    """The scenes recipe at ln K: its views and targets are the cause the controls of benchmarks/ssl_scenes.md found
    (the changes together take the loss off ln K); the preset, which has them, gives the check nothing to name."""
    found, checks = diagnose(make_run(tmp_path, OLD_SCENES, config=SCENES), batches=1)
    views = by_name(checks)["views and targets"]
    assert found.verdict == "yes" and views.verdict == "likely", views
    assert all(o in views.advice for o in SCENES_FIX), views.advice
    assert "global crops [0.32, 1.0], teacher temperature up to 0.040" in views.measured
    assert "iBOT masks on 50% of the global crops" in views.measured
    assert "iBOT masks on at most a quarter of the global crops (the scenes without it: 0.925-0.937 ln K)" in views.measured
    assert "6 local crops at [0.05, 0.32]" in views.measured and "large ones (scale >= 0.4)" in views.measured
    (tmp_path / "fixed").mkdir()
    _, fixed = diagnose(make_run(tmp_path / "fixed", config=SCENES), batches=1)
    assert by_name(fixed)["views and targets"].verdict == "no"
    assert load_config(SCENES).data.collate.masker.mask_probability == 0.25  # the preset is the fix, not a copy of it
    (tmp_path / "partly").mkdir()
    partly = views_and_targets(load_config(make_run(tmp_path / "partly", SCENES_FIX[:2]) / "config.yaml"))
    assert partly.verdict == "likely" and partly.advice.startswith("data.collate.masker.mask_probability=0.25 ")


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
