import csv
import json
import subprocess
import sys
from pathlib import Path

from PIL import Image

from vitlab.sweep import plan_runs

ROOT = Path(__file__).resolve().parents[1]


def test_plan_runs_shares_training_between_eval_settings():
    runs = plan_runs(["model.num_registers=0,4", "model.readout=cls,gap", "eval.readout=model,cls+gap", "train.max_steps=5"])
    assert len(runs) == 4
    assert all(r["evals"] == [{"readout": "model"}, {"readout": "cls+gap"}] for r in runs)
    assert runs[0]["name"] == "num_registers=0__readout=cls"
    assert "train.max_steps=5" in runs[0]["overrides"]


def test_sweep_2x2_writes_table_and_plot_and_skips_finished(tmp_path):
    out = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "vitlab", "sweep", "tests/configs/tiny_dino.py", "model.num_registers=0,2",
           "model.readout=cls,register_concat", "--out", str(out), "--linear-epochs", "2"]
    first = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stdout + first.stderr
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert len(rows) == 4
    status = {(r["model.num_registers"], r["model.readout"]): r["status"] for r in rows}
    assert status == {("0", "cls"): "ok", ("0", "register_concat"): "failed",
                      ("2", "cls"): "ok", ("2", "register_concat"): "ok"}
    failed = next(r for r in rows if r["status"] == "failed")
    assert "register_concat" in failed["error"] and "registers" in failed["error"]
    for r in rows:
        if r["status"] == "ok":
            assert 0 <= float(r["knn_top1"]) <= 100 and 0 <= float(r["linear_top1"]) <= 100
    assert "| model.num_registers |" in (out / "results.md").read_text()
    assert Image.open(out / "results.png").size[0] > 300
    result = json.loads((out / "num_registers=2__readout=cls" / "result.json").read_text())
    assert result["status"] == "ok" and result["rows"][0]["eval_readout"] == "model"
    # a second invocation skips the finished runs (and retries the failed one)
    second = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert second.returncode == 0
    assert second.stdout.count("finished before, skipped") == 3


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


def test_failed_run_gets_a_row_per_evaluation_setting_and_best_k():
    from vitlab.sweep import _flatten

    ok = {"overrides": ["model.readout=cls"], "status": "ok", "rows": [
        {"eval_readout": "model", "knn_k10_top1": 61.0, "knn_k20_top1": 60.0, "knn_top1": 61.0, "linear_top1": 65.0},
        {"eval_readout": "cls+gap", "knn_k10_top1": 58.0, "knn_k20_top1": 59.5, "knn_top1": 59.5, "linear_top1": 66.0}]}
    failed = {"overrides": ["model.readout=register_concat"], "status": "failed", "rows": [], "error": "needs registers"}
    columns, table = _flatten([ok, failed])
    assert [r["knn_top1"] for r in table[:2]] == [61.0, 59.5]
    assert [(r["eval_readout"], r["status"]) for r in table[2:]] == [("model", "failed"), ("cls+gap", "failed")]
