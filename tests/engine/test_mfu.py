"""MFU: the peak table and its override, and the trainer's ``train/tflops`` / ``train/mfu`` from the
task's analytic FLOPs."""

from pathlib import Path

import pytest
import torch

from vitlab.engine.logging import read_metrics
from vitlab.engine.mfu import PEAK_TFLOPS, dtype_name, mfu, peak_tflops, tflops

TINY = Path(__file__).resolve().parents[1] / "e2e" / "tiny_fmnist.py"


def test_peak_table_and_override(monkeypatch):
    assert peak_tflops("cpu", torch.float32) is None  # a CPU has no entry: MFU only with an override
    assert peak_tflops("cpu", torch.float32, override=2.5) == 2.5
    with pytest.raises(ValueError, match="must be > 0"):
        peak_tflops("cpu", torch.float32, override=0.0)
    names = {"NVIDIA H100 80GB HBM3": 989.0, "NVIDIA H100 PCIe": 756.0, "NVIDIA H200": 989.0,
             "NVIDIA A100-SXM4-80GB": 312.0, "Some Future GPU": None}
    for name, bf16 in names.items():
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None, name=name: name)
        assert peak_tflops("cuda", torch.bfloat16) == bf16, name
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA A100-SXM4-40GB")
    assert peak_tflops("cuda", torch.float32) == PEAK_TFLOPS["A100"]["fp32"]
    assert dtype_name(torch.bfloat16) == "bf16"
    with pytest.raises(ValueError, match="float64"):
        dtype_name(torch.float64)
    assert tflops(2e9, 500.0) == 1.0 and mfu(1.0, 4.0) == 0.25 and mfu(1.0, None) is None


def test_trainer_logs_tflops_and_mfu(tmp_path, capsys):
    from vitlab.config import apply_overrides, instantiate, load_config
    from vitlab.engine import train

    cfg = apply_overrides(load_config(TINY), [f"train.output_dir={tmp_path}", "train.max_steps=2", "train.log_every=2",
                                              "train.peak_tflops=0.5"])
    train(cfg)
    (record,) = [r for r in read_metrics(tmp_path / "metrics.jsonl") if "train/tflops" in r]
    assert record["train/mfu"] == pytest.approx(record["train/tflops"] / 0.5)
    assert record["train/tflops"] > 0
    # FLOPs per image are the batch's count over its size: the Hyena block's implicit filter is made
    # once per forward, not per image, so one image's count times B would overstate them.
    model, B = instantiate(cfg.model), cfg.data.batch_size
    per_image = model.flop_count(inference=False, image_size=(28, 28), batch_size=B) / B
    assert record["train/tflops"] * 1e12 / record["perf/images_per_s"] == pytest.approx(per_image)
    assert per_image < 0.9 * model.flop_count(inference=False, image_size=(28, 28), batch_size=1)
    line = [x for x in capsys.readouterr().out.splitlines() if x.startswith("step 2/2")][0]
    assert "tflops" in line and "mfu" in line
