"""The README's main job (`vitlab train experiments/dinov3_quickstart.py`) at a reduced size."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SHRINK = [
    "model.dim=32", "model.num_blocks=2", "model.layer_pattern=HR", "model.layer_types.R.mixer_layer.num_heads=2",
    "task.dino_head.out_dim=64", "task.dino_head.hidden_features=32", "task.ibot_head.out_dim=64", "task.ibot_head.hidden_features=32",
    # the recipe's milestones are fractions of the run: at 4 steps the warmup and prototype freeze take 1
    # step (a quarter) and Gram anchoring starts at step 2 (the second half, as in the 280-step run)
    "task.freeze_last_layer_fraction=0.25", "optim.lr.warmup_fraction=0.25", "+data.train.limit=64", "eval.val_size=16", "eval.monitor_bank=32", "+data.val.limit=100",
    "data.batch_size=8", "data.train_transform.local_crops_number=2", "train.max_steps=4", "train.log_every=1",
]


def test_quickstart_runs_end_to_end_with_knn_before_and_after(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "vitlab", "train", "experiments/dinov3_quickstart.py", *SHRINK,
                           f"train.output_dir={out}"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "step 0 (before training): knn" in proc.stdout
    assert "dino_loss" in proc.stdout and "gram_loss" in proc.stdout and "target_entropy" in proc.stdout
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    knn = [(d["step"], d["val/knn_top1"]) for d in lines if "val/knn_top1" in d]
    assert [s for s, _ in knn] == [0, 4]
    evals = [d for d in lines if "val/knn_top1" in d]
    # the register / token statistics of the fixed validation batch, per layer (tensorboard and metrics.jsonl)
    assert all(k in evals[-1] for k in ("val/tokens/layer0/outliers", "val/tokens/layer1/norm_registers",
                                        "val/tokens/layer1/cls_attn_registers"))
    assert "val/tokens/" not in proc.stdout  # the console shows the headline metrics only
    (_, before), (_, after) = knn
    assert f"knn_top1 {before:.2f} -> {after:.2f} ({after - before:+.2f})" in proc.stdout
    losses = [d for d in lines if "train/dino_loss" in d]
    assert losses and all(k in losses[-1] for k in ("train/ibot_loss", "train/koleo_loss", "train/gram_loss",
                                                      "train/collapse/target_entropy",
                                                      "train/dino/kl", "train/dino/local_crops"))
    assert list((out / "checkpoints").glob("*.pt"))
    assert list(out.glob("events.out.tfevents.*"))
    assert all(d["wall_s"] >= 0 for d in lines) and lines[-1]["wall_s"] >= lines[0]["wall_s"]
    from vitlab.config import load_config

    base = load_config(ROOT / "experiments/dinov3_quickstart.py").optim.lr.base
    lr_at_step_1 = next(d["train/lr"] for d in lines if d["step"] == 2)  # the end of the 1-step warmup
    assert abs(lr_at_step_1 - base * 4 * (8 / 1024) ** 0.5) < 1e-12  # DINOv3's sqrt_wrt_1024 rule, batch 8

    # the run as a reference curve, then the run drawn against it
    ref, png = tmp_path / "ref.csv", tmp_path / "curves.png"
    plot = [sys.executable, "-m", "vitlab", "plot-curves", str(out)]
    proc = subprocess.run(plot + ["--csv", str(ref), "--out", str(tmp_path / "first.png")], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert ref.read_text().splitlines()[0] == "step,val/knn_top1,minutes" and len(ref.read_text().splitlines()) == 3
    proc = subprocess.run(plot + ["--reference", str(ref), "--out", str(png)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "step 4 after" in proc.stdout and f"{after:.2f} vs reference {after:.2f} (+0.00)" in proc.stdout
    from PIL import Image

    assert Image.open(png).size[0] == 640
