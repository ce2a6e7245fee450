"""``tools/gpu_check.sh``: valid bash, a CPU dry run (tiny models) that writes the report, and the report
writer on fake results."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools" / "gpu_check.sh"
sys.path.insert(0, str(ROOT / "tools"))

from gpu_report import render  # noqa: E402


def test_script_parses():
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True).returncode == 0


def test_report_from_fake_results(tmp_path):
    (tmp_path / "device.txt").write_text("NVIDIA H200, 550.54, 143771 MiB\n")
    (tmp_path / "torch.txt").write_text("2.14.1 12.8\n")
    (tmp_path / "status.tsv").write_text("vit_s16\tok\t41\nvit_b16\ttimeout\t70\nbench_mixers\tskipped (dry run)\t0\n")
    models = {"vitlab": {"train_img_s": 3000.0, "train_tflops": 200.0, "train_mfu": 0.2},
              "vitlab+compile": {"train_img_s": 6000.0, "train_tflops": 400.0, "train_mfu": 0.4}}
    (tmp_path / "vit_s16.out").write_text("noise\n" + json.dumps({"device": "NVIDIA H200", "dtype": "bfloat16",
                                                                  "batch_size": 256, "peak_tflops": 989.0,
                                                                  "models": models}) + "\n")
    (tmp_path / "dinov3_vitl16_step.out").write_text(json.dumps({"models": {"compiled": {"train_img_s": 150.0}}}))
    text = render(tmp_path)
    assert "Device: NVIDIA H200, 550.54, 143771 MiB; torch 2.14.1 12.8." in text
    assert "| ViT-S/16 training step, bf16, compiled: MFU | >= 35% | 40.0% | yes |" in text
    assert "| ViT-B/16 training step, bf16, compiled: MFU | >= 50% | not measured | - |" in text
    assert "| DINOv3 ViT-L/16 training step, bf16, compiled: img/s per GPU | > 200 | 150.0 | no |" in text
    assert "| vit_b16 | timeout | 70 |" in text and "| vitlab+compile | 6000.00 | 400.000 | 40.0% |" in text


def test_dry_run_writes_the_report(tmp_path):
    env = dict(os.environ, PY=sys.executable, OUT=str(tmp_path / "raw"), REPORT=str(tmp_path / "gpu.md"),
               OMP_NUM_THREADS="1")
    proc = subprocess.run(["bash", str(SCRIPT), "--dry-run"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    status = (tmp_path / "raw" / "status.tsv").read_text()
    for name in ("vit_s16", "vit_b16", "hybrid_hr6", "dinov3_vitl16_step", "dino_loss_memory", "bench_mixers"):
        assert f"{name}\tok\t" in status, (status, (tmp_path / "raw" / f"{name}.log").read_text()[-2000:])
    text = (tmp_path / "gpu.md").read_text()
    assert "Device: cpu (dry run)" in text and "| vitlab | " in text and "| timm | " in text
