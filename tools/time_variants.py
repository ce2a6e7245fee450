"""Time one training step of each variant of a sweep, interleaved: what each configuration costs before (or beside)
training it.

    python tools/time_variants.py experiments/ablate_mixers.py --rounds 2 --out benchmarks/time_ablate_mixers.md

Each round runs one fresh process per variant of the experiment's ``sweep.variants`` (in the sweep's order, so a
change in the machine's speed hits every variant alike), each built as ``vitlab train`` builds it (temporary run
folder, no evaluation): ``--warmup`` steps, then ``--steps`` timed steps; a process reports its median step time
and the machine's fp32 matmul GFLOP/s measured just before (the worker of ``tools/compare_step_time.py``). The
table gives each variant's median over rounds, its ratio to the first variant's, and the training minutes the
experiment's ``train.max_steps`` would take at that rate (steps only: no evaluation, no checkpoints).
Run it on a quiet machine: nothing else (tests, other trainings) should share the cores.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path
from types import SimpleNamespace

from vitlab.config import apply_overrides, load_config
from vitlab.report import emit_report
from vitlab.sweep import check_sweep, check_variants

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_step_time import ROOT, run_side  # noqa: E402  (the one step-timing worker)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", help="experiment file with a sweep.variants section, relative to the repository root")
    parser.add_argument("overrides", nargs="*", help="applied to every variant (e.g. data.batch_size=16)")
    parser.add_argument("--variants", default=None, help="comma-separated names to time (default: all, in order)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--out", default=None, help="write the Markdown report here")
    args = parser.parse_args(argv)
    cfg = apply_overrides(load_config(args.config), args.overrides)  # train.max_steps as the runs will read it
    spec = check_sweep(cfg)
    if "variants" not in spec:
        parser.error(f"{args.config}: has no sweep.variants to time")
    variants = check_variants(cfg, spec["variants"], [])
    if args.variants:
        names = args.variants.split(",")
        unknown = [n for n in names if n not in variants]
        if unknown:
            parser.error(f"--variants {args.variants!r}: {', '.join(unknown)} not among {', '.join(variants)}")
        variants = {n: variants[n] for n in names}
    steps = int(cfg.train.max_steps)
    times: dict[str, list[float]] = {n: [] for n in variants}
    gfl: list[float] = []
    for r in range(args.rounds):
        for name, ovs in variants.items():
            side = SimpleNamespace(config=args.config, warmup=args.warmup, steps=args.steps,
                                   overrides=[*ovs, *args.overrides])
            res = run_side(ROOT, side)
            times[name].append(res["step_s"])
            gfl.append(res["gflops"])
            print(f"round {r + 1}/{args.rounds}: {name} {res['step_s']:.3f} s/step (matmul {res['gflops']:.0f} "
                  "GFLOP/s)", flush=True)
    med = {n: statistics.median(t) for n, t in times.items()}
    first = next(iter(med))
    cmd = " ".join(argv if argv is not None else sys.argv[1:])
    lines = [f"# Training step time of each variant of `{args.config}`", "",
             f"`python tools/time_variants.py {cmd}`", "",
             f"{args.rounds} rounds, one fresh process per variant in turn; each times {args.steps} steps after "
             f"{args.warmup} warm-up steps and reports the median. The machine's fp32 matmul read "
             f"{min(gfl):.0f}-{max(gfl):.0f} GFLOP/s (1024-square, before each run), {os.cpu_count()} CPUs. "
             f"`minutes`: {steps} steps (`train.max_steps`) at the median rate, steps only.", "",
             "| variant | " + " | ".join(f"round {i + 1} (s)" for i in range(args.rounds))
             + f" | median (s/step) | vs {first} | minutes |",
             "|---|" + "---|" * (args.rounds + 3)]
    for n, t in times.items():
        lines.append(f"| {n} | " + " | ".join(f"{x:.3f}" for x in t)
                     + f" | {med[n]:.3f} | {med[n] / med[first]:.2f}x | {med[n] * steps / 60:.1f} |")
    emit_report("\n".join(lines), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
