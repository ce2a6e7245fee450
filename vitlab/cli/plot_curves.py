"""``vitlab plot-curves RUN_DIR [--reference CSV ...] [--metric KEY] [--out PNG] [--csv CSV]``: a run's online
evaluation over steps against reference curves (:mod:`vitlab.curves`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from vitlab.curves import plot_curves, read_csv_curve, read_run_curve, write_csv_curve

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="a vitlab run directory (holds metrics.jsonl)")
    parser.add_argument("--reference", action="append", default=[], help="reference curve CSV (repeatable)")
    parser.add_argument("--metric", default="val/knn_top1", help="the metrics.jsonl key to draw")
    parser.add_argument("--out", default=None, help="PNG to write (default: RUN_DIR/curves.png)")
    parser.add_argument("--csv", default=None, help="also write the run's curve as a CSV (a new reference)")


def run(args: argparse.Namespace) -> int:
    curve = read_run_curve(args.run_dir, args.metric)
    curves = {f"this run ({Path(args.run_dir).name})": curve}
    for ref in args.reference:
        ref_metric, ref_curve = read_csv_curve(ref)
        if ref_metric != args.metric:
            raise ValueError(f"reference {ref!r} holds {ref_metric!r}, not --metric {args.metric!r}")
        curves[f"reference ({Path(ref).stem})"] = ref_curve
        ref_at = {s: v for s, v, _ in ref_curve}
        for step, value, minutes in curve:
            if step in ref_at:
                when = f" after {minutes:.1f} min" if minutes is not None else ""
                print(f"step {step}{when}: {args.metric} {value:.2f} vs reference {ref_at[step]:.2f} "
                      f"({value - ref_at[step]:+.2f})")
    out = Path(args.out) if args.out else Path(args.run_dir) / "curves.png"
    plot_curves(curves, out, args.metric)
    print(f"plot written to {out}")
    if args.csv:
        write_csv_curve(curve, args.csv, args.metric)
        print(f"curve written to {args.csv}")
    return 0
