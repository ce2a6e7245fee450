import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from vitlab.sweep import plan_runs

ROOT = Path(__file__).resolve().parents[1]


def test_plan_runs_shares_training_between_eval_settings():
    runs = plan_runs(["model.num_registers=0,4", "model.readout=cls,gap", "eval.readout=model,cls+gap", "train.max_steps=5"])
    assert len(runs) == 4
    seeded = plan_runs(["model.num_registers=0,4", "eval.readout=model,cls+gap"], seeds=3)
    assert len(seeded) == 6 and seeded[1]["name"] == "num_registers=0__seed=1" and "train.seed=1" in seeded[1]["overrides"]
    assert all(r["evals"] == [{"readout": "model"}, {"readout": "cls+gap"}] for r in runs)
    assert runs[0]["name"] == "num_registers=0__readout=cls"
    assert "train.max_steps=5" in runs[0]["overrides"]


GRID = ["tests/configs/tiny_dino.py", "model.num_registers=0,2", "model.readout=cls,register_concat",
        "eval.probe_epochs=2", "--seeds", "2"]


def sweep(*args, timeout=900):
    return subprocess.run([sys.executable, "-m", "vitlab", "sweep", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


SLURM = ["launch.launcher=slurm", "launch.cpus_per_task=1"]


@pytest.fixture(scope="module")
def local_sweep(request, tmp_path_factory):
    """The 2x2 grid with 2 seeds through the local runner (one of its runs fails by design). Where a Slurm
    runs (the ``slurm`` fixture), the same grid is submitted to it first, so the two runners share the
    machine's idle time; :func:`test_sweep_on_slurm_gives_the_local_runners_table` collects it."""
    root = tmp_path_factory.mktemp("sweeps")
    try:
        request.getfixturevalue("slurm")
        submitted = sweep(*GRID, "--out", str(root / "slurm"), *SLURM)
    except pytest.skip.Exception:
        submitted = None
    first = sweep(*GRID, "--out", str(root / "local"))
    assert first.returncode == 0, first.stdout + first.stderr
    return root / "local", submitted


def test_sweep_2x2_writes_table_and_plot_and_skips_finished(local_sweep):
    out = local_sweep[0]
    runs = list(csv.DictReader(open(out / "runs.csv")))
    assert len(runs) == 8 and {r["train.seed"] for r in runs} == {"0", "1"}
    status = {(r["model.num_registers"], r["model.readout"]): r["status"] for r in runs}
    assert status == {("0", "cls"): "ok", ("0", "register_concat"): "failed",
                      ("2", "cls"): "ok", ("2", "register_concat"): "ok"}
    failed = next(r for r in runs if r["status"] == "failed")
    assert "register_concat" in failed["error"] and "registers" in failed["error"]
    for r in runs:
        if r["status"] == "ok":  # the pretrained score and its random-init baseline, same protocol
            assert all(0 <= float(r[m]) <= 100 for m in ("knn_top1", "linear_top1", "init_knn_top1", "init_linear_top1"))
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert len(rows) == 4 and "train.seed" not in rows[0]
    ok = [r for r in rows if r["knn_top1_mean"]]
    assert len(ok) == 3 and all(r["seeds"] == "2" and r["knn_top1_std"] != "" for r in ok)
    assert {r["knn_top1_vs_best"] for r in ok} <= {"best", "n.s.", "lower"} and \
        [r["knn_top1_vs_best"] for r in ok].count("best") == 1
    for r in ok:
        assert abs(float(r["knn_top1_gain"]) - (float(r["knn_top1_mean"]) - float(r["init_knn_top1_mean"]))) < 0.02
    md = (out / "results.md").read_text()
    assert "| model.num_registers |" in md and "raw pixels" in md and " ± " in md and "k-NN init" in md
    assert json.loads((out / "pixels.json").read_text())["readout"] == "pixels"
    assert Image.open(out / "results.png").size[0] > 300
    result = json.loads((out / "num_registers=2__readout=cls__seed=1" / "result.json").read_text())
    assert result["status"] == "ok" and result["rows"][0]["eval_readout"] == "model"
    # a second invocation skips the finished runs (and retries the failed ones)
    second = sweep(*GRID, "--out", str(out))
    assert second.returncode == 0
    assert second.stdout.count("finished before, skipped") == 6


def _numbers(path):
    """results.csv without its free-text error column (a local run's log tail, a Slurm job's traceback) and
    the wall times (``minutes_*``: what the run cost on that runner, not what it scored)."""
    return [{k: v for k, v in row.items() if k != "error" and not k.startswith("minutes")}
            for row in csv.DictReader(open(path))]


def test_sweep_on_slurm_gives_the_local_runners_table(slurm, local_sweep):
    """The same grid as Slurm jobs (a training array, an evaluation array after it, the pixel baseline after
    those): `--status` follows it and its results.csv holds the local runner's numbers; submitting again
    resubmits only the failed runs."""
    from vitlab.slurm.jobs import cancel
    from vitlab.slurm.sweep_jobs import JOBS_FILE, run_state

    local, submitted = local_sweep
    out = local.parent / "slurm"
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    assert "8 of 8 run(s) submitted" in submitted.stdout and "raw-pixel baseline: job" in submitted.stdout
    jobs = json.loads((out / JOBS_FILE).read_text())
    assert len({ids["train"].split("_")[0] for ids in jobs["runs"].values()}) == 1  # one job array
    deadline = time.monotonic() + 900
    while not (all(run_state(r, out, jobs)[0] in ("done", "failed") for r in jobs["plan"])
               and (out / "pixels.json").exists()):
        assert time.monotonic() < deadline, [run_state(r, out, jobs) for r in jobs["plan"]]
        time.sleep(3)
    status = sweep(GRID[0], "--status", "--out", str(out))
    assert status.returncode == 0 and "6 done, 2 failed" in status.stdout, status.stdout + status.stderr
    assert "needs registers" in status.stdout  # a failed run says why
    assert _numbers(out / "results.csv") == _numbers(local / "results.csv")
    assert json.loads((out / "pixels.json").read_text())["knn_top1"] == \
        json.loads((local / "pixels.json").read_text())["knn_top1"]
    again = sweep(*GRID, "--out", str(out), *SLURM)
    assert again.returncode == 0 and "2 of 8 run(s) submitted" in again.stdout, again.stdout
    assert again.stdout.count(": done, not resubmitted") == 6
    jobs = json.loads((out / JOBS_FILE).read_text())
    cancel([ids[k] for ids in jobs["runs"].values() for k in ("train", "score")] + [jobs["pixels"]])


def test_train_multirun_hands_the_grid_to_sweep(monkeypatch):
    import vitlab.cli.sweep
    from vitlab.cli import main

    seen = {}
    monkeypatch.setattr(vitlab.cli.sweep, "run", lambda args: seen.update(vars(args)) or 0)
    argv = ["train", "tests/configs/tiny_dino.py", "--multirun", "model.num_registers=0,4", "eval.readout=cls,gap"]
    assert main(argv) == 0
    assert seen["config"] == "tests/configs/tiny_dino.py"
    assert seen["overrides"] == ["model.num_registers=0,4", "eval.readout=cls,gap"]
    assert len(plan_runs(seen["overrides"])) == 2  # eval.readout values share one pretraining


def test_train_without_multirun_rejects_a_sweep(capsys):
    from vitlab.cli import main

    assert main(["train", "tests/configs/tiny_dino.py", "model.num_registers=0,4"]) == 2
    assert "--multirun" in capsys.readouterr().err


def _row(readout, knn, linear=50.0, init=10.0):
    return {"eval_readout": readout, "feature_dim": 8, "knn_top1": knn, "linear_top1": linear,
            "init_knn_top1": init, "init_linear_top1": init}


def test_failed_run_gets_a_row_per_evaluation_setting():
    from vitlab.sweep import _flatten

    ok = {"overrides": ["model.readout=cls"], "status": "ok", "rows": [_row("model", 61.0), _row("cls+gap", 59.5)]}
    failed = {"overrides": ["model.readout=register_concat"], "status": "failed", "rows": [], "error": "needs registers"}
    columns, table = _flatten([ok, failed])
    assert [r["knn_top1"] for r in table[:2]] == [61.0, 59.5]
    assert [(r["eval_readout"], r["status"]) for r in table[2:]] == [("model", "failed"), ("cls+gap", "failed")]


def test_summary_marks_differences_within_the_spread():
    from vitlab.sweep import _flatten, summarise

    def run(readout, seed, knn):
        return {"overrides": [f"model.readout={readout}", f"train.seed={seed}"], "status": "ok", "rows": [_row("model", knn)]}

    results = [run("cls", 0, 70.0), run("cls", 1, 72.0),  # 71 +- 1.41
               run("gap", 0, 69.0), run("gap", 1, 70.0),  # 69.5 +- 0.71: within 1.41 + 0.71 of the best
               run("registers", 0, 60.0), run("registers", 1, 61.0)]  # 60.5: well below
    columns, table = summarise(*_flatten(results))
    by = {r["model.readout"]: r for r in table}
    assert (by["cls"]["knn_top1_mean"], by["cls"]["knn_top1_std"]) == (71.0, 1.41)
    assert [by[k]["knn_top1_vs_best"] for k in ("cls", "gap", "registers")] == ["best", "n.s.", "lower"]
    assert by["gap"]["knn_top1_gain"] == 59.5 and by["cls"]["seeds"] == 2


def test_sweep_scores_the_segmentation_probe_and_fills_in_what_a_finished_run_lacks(tmp_path):
    out = tmp_path / "sweep"
    base = [sys.executable, "-m", "vitlab", "sweep", "tests/configs/tiny_dino.py", "model.num_registers=2",
            "eval.seg_data=tests/configs/tiny_scenes.py", "eval.seg_val_size=6", "eval.seg_epochs=1",
            "eval.probe_epochs=2", "--out", str(out)]
    first = subprocess.run(base + ["eval.protocols=[seg]"], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stdout + first.stderr
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert len(rows) == 1 and "knn_top1_mean" not in rows[0]  # seg only: no k-NN columns
    miou, init = float(rows[0]["seg_miou_mean"]), float(rows[0]["init_seg_miou_mean"])
    assert 0 <= miou <= 100 and 0 <= init <= 100
    assert abs(float(rows[0]["seg_miou_gain"]) - (miou - init)) < 0.02
    assert "seg mIoU" in (out / "results.md").read_text() and "k-NN" not in (out / "results.md").read_text()
    assert float(rows[0]["minutes_mean"]) > 0 and "`minutes`: the run's training wall time" in (out / "results.md").read_text()
    assert 0 <= json.loads((out / "pixels.json").read_text())["seg_miou"] <= 100
    # the finished run is not retrained: only the protocols its result lacks are scored
    second = subprocess.run(base + ["eval.protocols=[knn,linear,seg]"], cwd=ROOT, capture_output=True, text=True,
                            timeout=900)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "scoring what its result lacks" in second.stdout and "base: training" not in second.stdout
    assert "raw-pixel baseline (knn, linear)" in second.stdout  # the pixels' seg score is kept too
    row = next(csv.DictReader(open(out / "results.csv")))
    assert float(row["seg_miou_mean"]) == miou and 0 <= float(row["knn_top1_mean"]) <= 100
    md = (out / "results.md").read_text()
    assert "| k-NN |" in md and "| seg mIoU |" in md
    assert json.loads((out / "pixels.json").read_text())["knn_top1"] >= 0


def test_an_evaluation_scored_before_is_kept(tmp_path, capsys):
    """A sweep stopped while scoring a run does not evaluate again what it already wrote; an output of another
    checkpoint (or of the trained weights where the random init is asked for) is evaluated."""
    from vitlab.sweep import _vitlab_eval

    ckpt, out = tmp_path / "run" / "checkpoints" / "step_00000005.pt", tmp_path / "run" / "eval_seg_init.json"
    out.parent.mkdir(parents=True)
    out.write_text(json.dumps({"checkpoint": str(ckpt), "init": True, "seg_miou": 12.5}))
    assert _vitlab_eval(ckpt, [], out, "--init", protocol="seg")["seg_miou"] == 12.5
    assert "eval_seg_init.json scored before, kept" in capsys.readouterr().out
    with pytest.raises(RuntimeError, match="vitlab eval exited"):  # no such checkpoint: it ran
        _vitlab_eval(ckpt, [], out, protocol="seg")


def test_an_unknown_protocol_is_named():
    import pytest

    from vitlab.sweep import run_protocols

    with pytest.raises(ValueError, match=r"eval.protocols=\['knn', 'segm'\]"):
        run_protocols("tests/configs/tiny_dino.py", {"protocols": "[knn,segm]"})


def test_variants_cross_the_grid_and_the_seeds_and_name_their_runs():
    from vitlab.sweep import train_overrides

    variants = {"base": [], "lr_2e-3": ["optim.lr.base=2e-3"]}
    runs = plan_runs(["model.num_registers=0,2", "eval.readout=model"], seeds=2, variants=variants)
    assert [r["name"] for r in runs[:2]] == ["base__num_registers=0__seed=0", "base__num_registers=0__seed=1"]
    assert len(runs) == 8 and runs[-1]["name"] == "lr_2e-3__num_registers=2__seed=1"
    assert runs[-1]["variant"] == "lr_2e-3" and runs[-1]["variant_overrides"] == ["optim.lr.base=2e-3"]
    assert runs[-1]["overrides"] == ["model.num_registers=2", "train.seed=1"]  # the table's columns
    assert train_overrides(runs[-1], Path("/sweep"))[:3] == ["optim.lr.base=2e-3", "model.num_registers=2",
                                                             "train.seed=1"]
    alone = plan_runs([], 1, variants)  # variants without a grid: one run each, named by the variant
    assert [(r["name"], r["overrides"]) for r in alone] == [("base", []), ("lr_2e-3", [])]


@pytest.mark.parametrize("variants, error", [
    ([], r"sweep.variants=\[\]: give a mapping"),
    ({"a b": []}, r"name 'a b' is not a folder name"),
    ({"lr": "optim.lr.base=1e-3"}, r"sweep.variants.lr='optim.lr.base=1e-3': a variant is a list"),
    ({"lr": ["optim.lr.base=1e-3,2e-3"]}, r"sweep.variants.lr: 'optim.lr.base=1e-3,2e-3' is a sweep"),
    ({"k": ["eval.ks=[3]"]}, r"sweep.variants.k: 'eval.ks=\[3\]': eval.\* and launch.\*"),
    ({"r": ["model.num_registers=4"]}, r"sweep.variants.r: 'model.num_registers=4' sets model.num_registers, which"),
    ({"s": ["train.seed=3"]}, r"sets train.seed, which the grid \(or --seeds"),
    ({"lr": ["optim.lr.bse=1e-3"]}, r"sweep.variants.lr: config has no key 'optim.lr.bse'; closest existing keys: optim"),
])
def test_a_bad_variant_is_named_with_its_override(variants, error):
    from vitlab.config import load_config
    from vitlab.sweep import check_variants

    with pytest.raises((ValueError, KeyError), match=error):
        check_variants(load_config("tests/configs/tiny_dino.py"), variants, ["model.num_registers=0,2"], seeds=2)


def test_an_unknown_sweep_key_is_named_with_the_closest():
    from omegaconf import OmegaConf

    from vitlab.config import UnknownKeyError
    from vitlab.sweep import check_sweep

    with pytest.raises(UnknownKeyError, match=r"no key 'sweep.variant'; closest existing keys: sweep.variants"):
        check_sweep(OmegaConf.create({"sweep": {"variant": {"base": []}}}))


@pytest.mark.parametrize("experiment, unchanged", [("experiments/ablate_ssl_recipe.py", "recipe"),
                                                    ("experiments/ablate_dino_scenes.py", "base")])
def test_the_shipped_ablations_plan_their_variants(experiment, unchanged):
    from vitlab.config import load_config
    from vitlab.sweep import check_sweep, check_variants, run_protocols

    cfg = load_config(experiment)
    variants = check_variants(cfg, check_sweep(cfg)["variants"], [], 2)  # every override exists in the config
    assert variants[unchanged] == [] and len(plan_runs([], 1, variants)) == len(variants) >= 10
    assert run_protocols(experiment) == ["monitor"]


def _metrics_file(run_dir, start=True):
    """A run's metrics.jsonl: a step-0 evaluation, 20 logged steps, a final evaluation."""
    records = [{"step": 0, "val/knn_top1": 40.0, "wall_s": 2.0}] if start else []
    records += [{"step": s, "train/dino_loss": float(s), "wall_s": 2.0 + s} for s in range(1, 21)]
    records += [{"step": 20, "val/knn_top1": 70.0, "val/knn_k20_top1": 70.0, "wall_s": 32.0}]
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def test_the_monitor_protocol_reads_the_runs_metrics(tmp_path):
    from vitlab.config import UnknownKeyError, load_config, save_config
    from vitlab.sweep import evaluate_run, read_monitor

    _metrics_file(tmp_path / "run")
    scores = read_monitor(tmp_path / "run", ["val/knn_top1", "train/dino_loss"])
    # the last evaluation, the step-0 one as init; the loss over its last tenth (steps 19, 20); the wall time
    assert scores == {"val/knn_top1": 70.0, "init_val/knn_top1": 40.0, "train/dino_loss": 19.5, "minutes": 32 / 60}
    _metrics_file(tmp_path / "no_start", start=False)
    assert "init_val/knn_top1" not in read_monitor(tmp_path / "no_start", ["val/knn_top1"])
    with pytest.raises(UnknownKeyError, match=r"eval.monitor_metrics: 'val/knn_top' is not in .*closest logged keys: val/"):
        read_monitor(tmp_path / "run", ["val/knn_top"])
    # through evaluate_run: the run's own config asks for it, and no checkpoint is needed
    save_config(load_config("tests/configs/tiny_dino_variants.py"), tmp_path / "run" / "config.yaml")
    (row,) = evaluate_run(tmp_path / "run", [{}])
    assert row["val/knn_top1"] == 70.0 and row["train/dino_loss"] == 19.5 and "checkpoint" not in row


def _variant_result(variant, seed, knn, loss, overrides=()):
    row = {"eval_readout": "model", "val/knn_top1": knn, "init_val/knn_top1": 40.0, "train/dino_loss": loss,
           "minutes": 3.0}
    return {"name": f"{variant}__seed={seed}", "variant": variant, "variant_overrides": list(overrides),
            "overrides": [f"train.seed={seed}"], "status": "ok", "rows": [row]}


def test_the_table_of_variants_has_a_variant_column_and_the_monitors(tmp_path):
    from vitlab.sweep import write_results

    results = [_variant_result("base", 0, 70.0, 6.0), _variant_result("base", 1, 72.0, 6.2),
               _variant_result("lr_8e-3", 0, 60.0, 6.5, ["optim.lr.base=8e-3"]),
               _variant_result("lr_8e-3", 1, 61.0, 6.7, ["optim.lr.base=8e-3"]),
               {"name": "koleo_0", "variant": "koleo_0", "variant_overrides": ["task.koleo_weight=0"],
                "overrides": ["train.seed=0"], "status": "failed", "rows": [], "error": "train exited 1"}]
    write_results(results, tmp_path)
    runs = list(csv.DictReader(open(tmp_path / "runs.csv")))
    assert [r["variant"] for r in runs] == ["base", "base", "lr_8e-3", "lr_8e-3", "koleo_0"]
    assert "optim.lr.base" not in runs[0]  # a variant's overrides are not columns
    rows = {r["variant"]: r for r in csv.DictReader(open(tmp_path / "results.csv"))}
    assert list(rows) == ["base", "lr_8e-3", "koleo_0"] and rows["base"]["seeds"] == "2"
    assert (rows["base"]["val/knn_top1_mean"], rows["base"]["val/knn_top1_std"]) == ("71.0", "1.41")
    assert rows["base"]["init_val/knn_top1_mean"] == "40.0" and rows["base"]["val/knn_top1_gain"] == "31.0"
    assert [rows[v]["val/knn_top1_vs_best"] for v in ("base", "lr_8e-3")] == ["best", "lower"]
    assert rows["lr_8e-3"]["train/dino_loss_mean"] == "6.6" and rows["base"]["minutes_mean"] == "3.0"
    assert rows["koleo_0"]["failed"] == "1" and rows["koleo_0"]["error"] == "train exited 1"
    md = (tmp_path / "results.md").read_text()
    assert md.startswith("| variant | eval_readout | seeds | val/knn_top1 | val/knn_top1 init |")
    assert "| train/dino_loss | minutes |" in md and "| base | model | 2 | 71.00 ± 1.41 |" in md
    assert "- `lr_8e-3`: `optim.lr.base=8e-3`" in md and "- `base`: the config as is" in md


def test_a_loss_is_best_where_it_is_lowest():
    from vitlab.sweep import _flatten, summarise

    def result(readout, seed, loss):
        return {"overrides": [f"model.readout={readout}", f"train.seed={seed}"], "status": "ok",
                "rows": [{"eval_readout": "model", "val/loss": loss}]}

    table = summarise(*_flatten([result("cls", 0, 1.0), result("cls", 1, 1.1), result("gap", 0, 2.0),
                                 result("gap", 1, 2.1)]))[1]
    assert [r["val/loss_vs_best"] for r in table] == ["best", "higher"]


def test_a_sweep_of_variants_scored_by_the_monitor(tmp_path):
    """Two variants of tiny_dino, one seed, through the local runner: no evaluation runs again."""
    out = tmp_path / "variants"
    first = sweep("tests/configs/tiny_dino_variants.py", "--out", str(out))
    assert first.returncode == 0, first.stdout + first.stderr
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["base", "koleo_0"]
    assert not (out / "pixels.json").exists() and not list(out.glob("*/eval_*.json"))
    rows = {r["variant"]: r for r in csv.DictReader(open(out / "results.csv"))}
    assert list(rows) == ["base", "koleo_0"] and all(r["seeds"] == "1" for r in rows.values())
    for r in rows.values():  # the run's last online k-NN, its step-0 one and the loss, from its metrics.jsonl
        assert 0 <= float(r["val/knn_top1_mean"]) <= 100 and 0 <= float(r["init_val/knn_top1_mean"]) <= 100
        assert float(r["train/dino_loss_mean"]) > 0 and float(r["minutes_mean"]) > 0
    md = (out / "results.md").read_text()
    assert "| variant |" in md and "- `koleo_0`: `task.koleo_weight=0`" in md
    again = sweep("tests/configs/tiny_dino_variants.py", "--out", str(out))
    assert again.returncode == 0 and again.stdout.count("finished before, skipped") == 2


def test_an_unknown_protocol_fails_before_anything_trains(tmp_path):
    import argparse

    from vitlab.cli.sweep import add_arguments, run

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["tests/configs/tiny_dino.py", "model.num_registers=0,2", "eval.protocols=[knn,segm]",
                              "--out", str(tmp_path / "sweep")])
    with pytest.raises(ValueError, match=r"eval.protocols=\['knn', 'segm'\]"):
        run(args)
    assert not (tmp_path / "sweep").exists()
