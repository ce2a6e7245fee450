"""``vitlab bench``: img/s, TFLOP/s from the analytic FLOPs, MFU against a given peak, memory, for vitlab
and timm, eager and compiled, as a table and as JSON (a tiny model, a few repeats)."""

import json

import pytest

from vitlab.bench import format_table
from vitlab.cli import main

TINY = ["configs/models/vit_tiny_p16.py", "model.image_size=32", "model.num_blocks=1", "--image-size", "32",
        "--batch-size", "2", "--repeats", "2", "--warmup", "1", "--device", "cpu"]


def _json(capsys, *extra):
    assert main(["bench", *TINY, "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out)


def test_json_reports_tflops_and_mfu_for_vitlab_and_timm(capsys):
    out = _json(capsys, "--timm", "vit_tiny_patch16_224", "--peak-tflops", "2.0")
    assert set(out["models"]) == {"vitlab", "timm"} and out["peak_tflops"] == 2.0 and out["device"] == "cpu"
    flops = out["flops_per_image"]
    assert 0 < flops["infer"] < flops["train"]
    for r in out["models"].values():
        for kind in ("infer", "train"):
            assert r[f"{kind}_tflops"] == pytest.approx(flops[kind] * r[f"{kind}_img_s"] / 1e12)
            assert r[f"{kind}_mfu"] == pytest.approx(r[f"{kind}_tflops"] / 2.0)
        assert r["train_memory_mb"] > 0


def test_cpu_has_no_mfu_without_a_peak_and_compiled_variants(capsys):
    out = _json(capsys, "--compile")
    assert set(out["models"]) == {"vitlab", "vitlab+compile"} and out["peak_tflops"] is None
    for r in out["models"].values():
        assert r["infer_mfu"] is None and r["train_mfu"] is None and r["train_img_s"] > 0


def test_table_marks_missing_values():
    table = format_table({"vitlab": {"infer_img_s": 10.0, "infer_tflops": 0.5, "infer_mfu": None},
                          "timm": {"infer_img_s": 8.0, "infer_tflops": 0.4, "infer_mfu": 0.25}})
    lines = table.splitlines()
    assert lines[0] == "| model | infer img/s | infer TFLOP/s | infer MFU |"
    assert lines[2] == "| vitlab | 10.00 | 0.500 | - |" and lines[3] == "| timm | 8.00 | 0.400 | 25.0% |"
