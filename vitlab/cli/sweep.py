"""``vitlab sweep CONFIG [key=a,b ...] [--seeds N] [--jobs J] [--out DIR] [--status]``: a grid (and the
config's ``sweep.variants``) of experiments, each trained and scored with its baselines, summarised in a
table and a plot (:mod:`vitlab.sweep`).

The runs execute locally (:func:`vitlab.sweep.run_local`) or, with ``launch.launcher=slurm``, as Slurm
jobs (:func:`vitlab.slurm.sweep_jobs.submit_sweep`); ``--status`` reports a submitted sweep.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vitlab.config import apply_overrides, load_config, parse_sweep
from vitlab.slurm.sweep_jobs import submit_sweep, sweep_status
from vitlab.sweep import check_sweep, check_variants, plan_runs, run_local, run_protocol

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="experiment config; its `sweep.grid` (if any) lists sweep overrides, its "
                        "`sweep.variants` (if any) named override lists")
    parser.add_argument("overrides", nargs="*", help="more overrides, sweeps included: model.num_registers=0,4")
    parser.add_argument("--out", default=None, help="sweep folder (default: sweep.out or runs/sweeps/<config name>)")
    parser.add_argument("--jobs", type=int, default=1, help="training runs at once")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per configuration (default: sweep.seeds or 1)")
    parser.add_argument("--status", action="store_true",
                        help="a sweep submitted to Slurm: each run's state, and the tables of what has finished")


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    spec = check_sweep(cfg)
    overrides = list(spec.get("grid", [])) + list(args.overrides)
    # launch.* says where the runs execute, not what they train: the same for every run, not a grid axis
    launch_ovs = [o for o in overrides if o.lstrip("+~").startswith("launch.")]
    grid = [o for o in overrides if o not in launch_ovs]
    out = Path(args.out or spec.get("out") or f"runs/sweeps/{Path(args.config).stem}")
    if args.status:
        return sweep_status(out)
    if not grid and "variants" not in spec:
        raise ValueError("nothing to sweep: give sweep.grid or sweep.variants in the config, or sweep overrides "
                         "(key=a,b)")
    seeds = args.seeds or spec.get("seeds", 1)
    if seeds < 1:
        raise ValueError(f"--seeds must be at least 1, got {seeds}")
    variants = check_variants(cfg, spec["variants"], grid, seeds) if "variants" in spec else None
    runs = plan_runs(grid, seeds, variants)
    for setting in {json.dumps(e, sort_keys=True): e for r in runs for e in r["evals"]}.values():
        run_protocol(args.config, setting)  # an unknown protocol fails before anything trains
    out.mkdir(parents=True, exist_ok=True)
    combos = parse_sweep(grid)  # evaluation settings every configuration shares also score the raw pixels
    shared_evals = [o for o in combos[0] if o.lstrip("+").startswith("eval.") and all(o in c for c in combos)]
    launch = apply_overrides(cfg, launch_ovs).get("launch")
    if launch is not None and launch.launcher == "slurm":
        return submit_sweep(runs, args.config, out, launch, shared_evals)
    print(f"[sweep] {len(runs)} training runs ({seeds} seed(s) each) into {out}", flush=True)
    return run_local(runs, args.config, out, shared_evals, jobs=args.jobs)
