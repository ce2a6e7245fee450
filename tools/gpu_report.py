"""Write ``benchmarks/gpu.md`` from the raw outputs of ``tools/gpu_check.sh``: the device (nvidia-smi),
torch, every step's status and time, the issue-12 goals with the measured value next to each, and
the full tables of each ``vitlab bench`` / SSL-step run.

    python tools/gpu_report.py benchmarks/gpu_check --out benchmarks/gpu.md
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from vitlab.bench import format_table

# (what, step whose JSON holds it, model key, metric, goal, goal text, reference)
GOALS = [
    ("ViT-S/16 training step, bf16, compiled: MFU", "vit_s16", "vitlab+compile", "train_mfu", 0.35, ">= 35%",
     "nvSubquadratic ViT-5-S: 22.9%"),
    ("ViT-B/16 training step, bf16, compiled: MFU", "vit_b16", "vitlab+compile", "train_mfu", 0.50, ">= 50%", ""),
    ("DINOv3 ViT-L/16 training step, bf16, compiled: img/s per GPU", "dinov3_vitl16_step", "compiled",
     "train_img_s", 200.0, "> 200", "DINOv3: ~159 img/s per H100"),
]
TITLES = {"vit_s16": "ViT-S/16 vs timm vit_small_patch16_224", "vit_b16": "ViT-B/16 vs timm vit_base_patch16_224",
          "hybrid_hr6": 'Hybrid "HR"*6 (configs/models/hybrid_small_p16.py)',
          "dinov3_vitl16_step": "DINOv3 ViT-L/16 training step (tools/bench_ssl_step.py)"}


def load_json(out_dir: Path, name: str) -> dict | None:
    """The JSON object a step printed last on stdout, or None (step failed, timed out or skipped)."""
    path = out_dir / f"{name}.out"
    if not path.exists():
        return None
    for line in reversed(path.read_text().splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                return None
    return None


def _fmt(value: float | None, goal: float) -> str:
    if value is None:
        return "not measured"
    return f"{value:.1%}" if goal < 1 else f"{value:.1f}"


def render(out_dir: Path) -> str:
    read = lambda name: (out_dir / name).read_text().strip() if (out_dir / name).exists() else "unknown"  # noqa: E731
    lines = ["# GPU check", "", f"Device: {read('device.txt')}; torch {read('torch.txt')}.",
             "Written by `tools/gpu_check.sh` (raw outputs in its output folder) through `tools/gpu_report.py`.", "",
             "## Goals (issue 12)", "", "| goal | target | measured | met | reference |", "|---|---|---|---|---|"]
    results = {name: load_json(out_dir, name) for name in TITLES}
    for what, name, model, metric, goal, target, ref in GOALS:
        value = ((results.get(name) or {}).get("models", {}).get(model, {}) or {}).get(metric)
        met = "-" if value is None else ("yes" if value >= goal else "no")
        lines.append(f"| {what} | {target} | {_fmt(value, goal)} | {met} | {ref} |")
    lines += ["", "## Steps", "", "| step | status | seconds |", "|---|---|---|"]
    status = out_dir / "status.tsv"
    for row in (status.read_text().splitlines() if status.exists() else []):
        name, state, seconds = (row.split("\t") + ["", ""])[:3]
        lines.append(f"| {name} | {state} | {seconds} |")
    for name, title in TITLES.items():
        res = results[name]
        lines += ["", f"## {title}", ""]
        if res is None:
            lines.append("No result (see the step's status and its log).")
            continue
        lines.append(f"{res.get('device')}, {res.get('dtype')}, batch {res.get('batch_size')}, "
                     f"peak {res.get('peak_tflops') or 'unknown'} TFLOP/s.")
        lines += ["", format_table(res["models"])]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", help="the raw-output folder of tools/gpu_check.sh")
    parser.add_argument("--out", default="benchmarks/gpu.md")
    args = parser.parse_args(argv)
    text = render(Path(args.out_dir))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
