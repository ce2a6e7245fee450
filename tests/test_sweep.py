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
    """results.csv without its free-text error column (a local run's log tail, a Slurm job's traceback)."""
    return [{k: v for k, v in row.items() if k != "error"} for row in csv.DictReader(open(path))]


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
    import vitlab.sweep
    from vitlab.cli import main

    seen = {}
    monkeypatch.setattr(vitlab.sweep, "run", lambda args: seen.update(vars(args)) or 0)
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


def test_an_unknown_protocol_is_named():
    import pytest

    from vitlab.sweep import run_protocols

    with pytest.raises(ValueError, match=r"eval.protocols=\['knn', 'segm'\]"):
        run_protocols("tests/configs/tiny_dino.py", {"protocols": "[knn,segm]"})
