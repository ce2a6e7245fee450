"""A run's online evaluation over steps, drawn against reference curves, so a user can tell within minutes
whether a run is on track (``vitlab plot-curves RUN_DIR [--reference CSV ...]``: :mod:`vitlab.cli.plot_curves`).

    vitlab plot-curves runs/dinov3_fmnist/2026-12-01_10-00-00 --reference benchmarks/curves/dinov3_fmnist.csv
    vitlab plot-curves RUN_DIR --csv benchmarks/curves/dinov3_fmnist.csv   # export a run as a reference

A curve is the ``metric`` (default ``val/knn_top1``, the DINOv3 task's online k-NN) of every record of
the run's ``metrics.jsonl`` that has it, with its step and wall-clock minutes since the run started
(evaluations included). The plot (PNG, drawn with Pillow) has steps on the x axis; the command also
prints, for every step the run and a reference share, the run's value next to the reference's.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

from vitlab._moved import moved
from vitlab.engine.logging import read_metrics
from vitlab.palette import PALETTE

__all__ = ["Curve", "read_run_curve", "read_csv_curve", "write_csv_curve", "plot_curves"]

Curve = list[tuple[int, float, float | None]]  # (step, value, minutes since the start)


def read_run_curve(run_dir: str | Path, metric: str = "val/knn_top1") -> Curve:
    """The ``metric`` records of ``run_dir/metrics.jsonl`` as a curve."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"no metrics.jsonl in run directory {str(run_dir)!r}")
    points = [(int(r["step"]), float(r[metric]), r["wall_s"] / 60 if "wall_s" in r else None)
              for r in read_metrics(path) if metric in r]
    if not points:
        raise ValueError(f"{str(path)!r} has no records of metric {metric!r}")
    return points


def write_csv_curve(curve: Curve, path: str | Path, metric: str = "val/knn_top1") -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", metric, "minutes"])
        for step, value, minutes in curve:
            w.writerow([step, f"{value:.4f}", "" if minutes is None else f"{minutes:.2f}"])


def read_csv_curve(path: str | Path) -> tuple[str, Curve]:
    """A curve written by :func:`write_csv_curve`: (metric name, points)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"reference curve not found: {str(path)!r}")
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if len(rows) < 2 or len(rows[0]) < 2 or rows[0][0] != "step":
        raise ValueError(f"{str(path)!r} is not a curve CSV (header 'step,<metric>,minutes' and one row per point)")
    return rows[0][1], [(int(r[0]), float(r[1]), float(r[2]) if len(r) > 2 and r[2] else None) for r in rows[1:]]


def y_range(values: list[float]) -> tuple[float, float]:
    """The plot's y axis: the values' range padded by 5%, at least 2% of their magnitude wide (a flat curve
    of a loss ratio near 1 or of a k-NN near 60 still gets a scale of its own size)."""
    lo, hi = min(values), max(values)
    mid, span = (lo + hi) / 2, max(hi - lo, 0.02 * max(abs(lo), abs(hi)), 1e-6)
    return mid - 0.55 * span, mid + 0.55 * span


def plot_curves(curves: dict[str, Curve], path: str | Path, metric: str = "val/knn_top1") -> None:
    """Line plot of ``label -> curve`` (x: step, y: metric) as a PNG."""
    from PIL import Image, ImageDraw

    points = [p for c in curves.values() for p in c]
    max_step = max(p[0] for p in points) or 1
    lo, hi = y_range([p[1] for p in points])
    digits = max(1, 2 - math.floor(math.log10(hi - lo)))  # three significant figures of the axis' span
    W, H, left, top, bottom = 640, 400, 60, 30, 340
    right = W - 20
    img = Image.new("RGB", (W, H + 18 * len(curves)), "white")
    draw = ImageDraw.Draw(img)

    def xy(step: float, value: float) -> tuple[float, float]:
        return left + (right - left) * step / max_step, bottom - (bottom - top) * (value - lo) / (hi - lo)

    draw.text((left, 8), f"{metric} over optimizer steps", fill="black")
    draw.line([(left, top), (left, bottom), (right, bottom)], fill="black")
    for i in range(6):
        value = lo + (hi - lo) * i / 5
        _, y = xy(0, value)
        draw.line([(left - 4, y), (left, y)], fill="black")
        draw.text((4, y - 6), f"{value:.{digits}f}", fill="black")
        x, _ = xy(max_step * i / 5, lo)
        draw.line([(x, bottom), (x, bottom + 4)], fill="black")
        draw.text((x - 10, bottom + 8), str(round(max_step * i / 5)), fill="black")
    for i, (label, curve) in enumerate(curves.items()):
        color = PALETTE[i % len(PALETTE)]
        pts = [xy(s, v) for s, v, _ in sorted(curve)]
        if len(pts) > 1:
            draw.line(pts, fill=color, width=2)
        for x, y in pts:
            draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=color)
        y = H + 18 * i
        draw.rectangle([left, y, left + 12, y + 10], fill=color)
        draw.text((left + 18, y - 1), label, fill="black")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


# ``vitlab plot-curves`` itself: :mod:`vitlab.cli.plot_curves` (the names raise an error naming it, for one release)
__getattr__ = moved(__name__, {"add_arguments": "vitlab.cli.plot_curves.add_arguments",
                               "run": "vitlab.cli.plot_curves.run"})
