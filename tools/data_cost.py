"""What an experiment's data pipeline costs: CPU seconds per batch, and the step time it takes from training.

    python tools/data_cost.py experiments/dinov3_quickstart.py --out benchmarks/data_cost_dinov3_quickstart.md

1. Per batch: the train loader's work (dataset transform and collate) run in this process
   (``data.num_workers=0``), seconds per batch over ``--batches`` batches.
2. Per step: ``--steps`` training steps fed by the configured loader (its worker processes share the
   machine's cores with the training threads), then ``--steps`` steps fed by batches fetched beforehand,
   with the workers idle: the difference is what the pipeline takes from the step.

The machine's fp32 matmul GFLOP/s is printed beside the times. Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time

from vitlab.report import emit_report


def _trainer(config: str, overrides: list[str], tmp: str):
    from vitlab.config import apply_overrides, load_config
    from vitlab.engine.trainer import Trainer

    cfg = apply_overrides(load_config(config), [*overrides, f"train.output_dir={tmp}", "train.max_steps=100000",
                                                "train.eval_at_start=false", "train.log_every=1000000"])
    return Trainer(cfg, experiment="data_cost")


def _median_step(trainer, steps: int) -> float:
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        trainer.train_step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    from vitlab.engine.mfu import matmul_gflops

    gflops = matmul_gflops()
    with tempfile.TemporaryDirectory() as tmp:
        inline = _trainer(args.config, [*args.overrides, "data.num_workers=0"], tmp)
        next(inline.data)
        t0 = time.perf_counter()
        for _ in range(args.batches):
            next(inline.data)
        per_batch = (time.perf_counter() - t0) / args.batches
        inline.logger.close()
        del inline
    with tempfile.TemporaryDirectory() as tmp:
        trainer = _trainer(args.config, args.overrides, tmp)
        for _ in range(3):
            trainer.train_step()
        live = _median_step(trainer, args.steps)
        fetched = [next(trainer.data) for _ in range(args.steps)]
        time.sleep(3)  # the workers refill their prefetch queue, then idle
        trainer.data = iter(fetched)
        prefetched = _median_step(trainer, args.steps)
        workers = trainer.train_loader.num_workers
        trainer.logger.close()
    lines = [f"# Data pipeline cost of `{args.config}`", "",
             f"`python tools/data_cost.py {' '.join(argv if argv is not None else sys.argv[1:])}`; "
             f"fp32 matmul {gflops:.0f} GFLOP/s (1024-square, measured first).", "",
             f"- the loader's work in this process: **{per_batch:.3f} s per batch** (median of {args.batches})",
             f"- training step fed by the loader ({workers} worker process(es)): **{live:.3f} s** (median of {args.steps})",
             f"- training step fed by batches fetched beforehand: **{prefetched:.3f} s**",
             f"- the pipeline takes {live - prefetched:.3f} s from each step ({100 * (live - prefetched) / live:.0f}%)"]
    report = "\n".join(lines)
    emit_report(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
