"""One interleaved comparison of an experiment's training step time: this tree against another commit.

    python tools/compare_step_time.py experiments/dinov3_quickstart.py --baseline 9d504d8 --rounds 4 \
        --out benchmarks/speed_dinov3_quickstart.md

The baseline commit is checked out into a temporary git worktree. Each round runs one fresh process per side,
alternating (baseline, this tree, baseline, ...), so a change in the machine's speed hits both alike. A process
builds the experiment as ``vitlab train`` does (temporary run folder, no evaluation), runs ``--warmup`` steps,
then times ``--steps`` steps; it reports the median step time and the machine's fp32 matmul GFLOP/s measured
just before. The table lists every round; the ratio is the baseline's median step time over this tree's.
Run it on a quiet machine: nothing else (tests, other trainings) should share the cores.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from vitlab.report import emit_report

ROOT = Path(__file__).resolve().parents[1]

# Runs inside each tree with only APIs both sides have: load_config, apply_overrides, Trainer.train_step.
WORKER = r"""
import json, statistics, sys, tempfile, time
import torch
from vitlab.config import apply_overrides, load_config
from vitlab.engine.trainer import Trainer

config, warmup, steps, overrides = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
mm = []
for _ in range(22):
    t0 = time.perf_counter(); a @ b; mm.append(time.perf_counter() - t0)
gflops = 2 * 1024**3 / statistics.median(mm[2:]) / 1e9
with tempfile.TemporaryDirectory() as tmp:
    cfg = apply_overrides(load_config(config), [*overrides, f"train.output_dir={tmp}", f"train.max_steps={warmup + steps}",
                                                "train.eval_at_start=false", "train.log_every=1000000"])
    trainer = Trainer(cfg, experiment="compare")
    for _ in range(warmup):
        trainer.train_step()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter(); trainer.train_step(); times.append(time.perf_counter() - t0)
    trainer.logger.close()
print("RESULT " + json.dumps({"step_s": statistics.median(times), "gflops": gflops}))
"""


def run_side(tree: Path, args: argparse.Namespace) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree))
    cmd = [sys.executable, "-c", WORKER, args.config, str(args.warmup), str(args.steps), *args.overrides]
    proc = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"the run in {tree} failed:\n{proc.stderr[-3000:]}")
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", help="experiment file, relative to the repository root (in both trees)")
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--baseline", required=True, help="commit (or branch) to compare against")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--out", default=None, help="write the Markdown report here")
    args = parser.parse_args(argv)
    found = subprocess.run(["git", "rev-parse", "--short", "--verify", "--quiet", f"{args.baseline}^{{commit}}"],
                           cwd=ROOT, capture_output=True, text=True)
    if found.returncode:
        parser.error(f"--baseline {args.baseline!r}: not a commit of this repository")
    commit = found.stdout.strip()
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.strip()
    rows = []
    with tempfile.TemporaryDirectory(prefix="vitlab-baseline-") as tmp:
        base = Path(tmp) / "tree"
        subprocess.run(["git", "worktree", "add", "--detach", str(base), commit], cwd=ROOT, check=True,
                       capture_output=True)
        try:
            for r in range(args.rounds):
                row = {"baseline": run_side(base, args), "this": run_side(ROOT, args)}
                rows.append(row)
                print(f"round {r + 1}: baseline {row['baseline']['step_s']:.3f} s/step "
                      f"(matmul {row['baseline']['gflops']:.0f} GFLOP/s), this tree {row['this']['step_s']:.3f} s/step "
                      f"(matmul {row['this']['gflops']:.0f} GFLOP/s)", flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=ROOT, capture_output=True)
    med = {side: statistics.median(r[side]["step_s"] for r in rows) for side in ("baseline", "this")}
    gfl = [r[side]["gflops"] for r in rows for side in ("baseline", "this")]
    this_name = f"{head}{' + uncommitted changes' if dirty else ''}"
    lines = [f"# Training step time of `{args.config}`: {this_name} against {commit}", "",
             f"`python tools/compare_step_time.py {' '.join(argv if argv is not None else sys.argv[1:])}`", "",
             f"{args.rounds} rounds, alternating fresh processes (baseline first); each times {args.steps} steps after "
             f"{args.warmup} warm-up steps and reports the median. The machine's fp32 matmul read "
             f"{min(gfl):.0f}-{max(gfl):.0f} GFLOP/s (1024-square, before each run), {os.cpu_count()} CPUs.", "",
             f"| round | {commit} (s/step) | {this_name} (s/step) | speed-up |", "|---|---|---|---|"]
    for i, r in enumerate(rows, 1):
        b, t = r["baseline"]["step_s"], r["this"]["step_s"]
        lines.append(f"| {i} | {b:.3f} | {t:.3f} | {b / t:.2f}x |")
    lines.append(f"| median | {med['baseline']:.3f} | {med['this']:.3f} | **{med['baseline'] / med['this']:.2f}x** |")
    report = "\n".join(lines)
    emit_report(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
