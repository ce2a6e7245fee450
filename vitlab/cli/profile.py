"""``vitlab profile CONFIG [key=value ...]``: where a training step's time goes, operator by operator.

Builds the experiment exactly as ``vitlab train`` does (task, data loader, optimizer, precision; the run
folder is a temporary one, nothing is saved), then:

1. runs ``--warmup`` steps, and times ``--steps`` steps without the profiler: step time, images/s and the
   achieved GFLOP/s of the task's analytic FLOPs (:meth:`Task.train_flops`, the count ``train/tflops``
   logs), beside the machine's measured fp32 matmul GFLOP/s;
2. profiles ``--profile-steps`` more steps with :mod:`torch.profiler` (shapes recorded) and ranks the
   operators by self time, once by name and once by name and input shapes;
3. with ``--eval-images N``, times (once warm, without the profiler) and profiles the evaluation's feature
   extraction (the task's ``model`` in eval mode under ``no_grad``, the protocol's readout) over N
   validation images.

Operators are also summed into families (matrix products, FFTs, copies and fills, element-wise, ...) so
the report says in one line what share of the step does arithmetic and what share moves memory. The
report is printed and written as Markdown (``--out``, default ``benchmarks/profile_<experiment>.md``).

    vitlab profile experiments/dinov3_quickstart.py --steps 10 --profile-steps 5 --eval-images 2000
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from vitlab.config import apply_overrides, load_config
from vitlab.engine.mfu import matmul_gflops
from vitlab.engine.trainer import Trainer
from vitlab.eval.accuracy import eval_mode
from vitlab.eval.features import readout_features
from vitlab.profile import op_table

__all__ = ["add_arguments", "run"]


def _families_line(families: dict[str, float]) -> str:
    return "; ".join(f"{name} {100 * share:.1f}%" for name, share in sorted(families.items(), key=lambda kv: -kv[1]))


def _profiled(fn, device: torch.device):
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities, record_shapes=True) as prof:
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    return prof


def _section(title: str, prof, top: int) -> list[str]:
    by_name, families = op_table(prof.key_averages(), top=top, with_shapes=False)
    by_shape, _ = op_table(prof.key_averages(group_by_input_shape=True), top=top, with_shapes=True)
    return [f"## {title}", "", f"Self time by family: {_families_line(families)}.", "",
            f"Top {top} operators by self time:", "", *by_name, "",
            f"Top {top} (operator, input shapes) by self time:", "", *by_shape, ""]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="experiment config file (.py or .yaml)")
    parser.add_argument("overrides", nargs="*", help="hydra-grammar overrides, e.g. data.batch_size=32")
    parser.add_argument("--warmup", type=int, default=3, help="steps run before anything is measured")
    parser.add_argument("--steps", type=int, default=10, help="steps timed without the profiler")
    parser.add_argument("--profile-steps", type=int, default=5, help="steps recorded by the profiler")
    parser.add_argument("--eval-images", type=int, default=0,
                        help="also profile the evaluation's feature extraction over this many validation images")
    parser.add_argument("--top", type=int, default=20, help="operators listed per table")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--out", default=None,
                        help="Markdown report (default benchmarks/profile_<experiment>.md; '-' prints only)")


def run(args: argparse.Namespace) -> int:
    minimum = {"warmup": 0, "steps": 1, "profile_steps": 1, "eval_images": 0, "top": 1}
    for name, least in minimum.items():
        if getattr(args, name) < least:
            raise ValueError(f"--{name.replace('_', '-')} must be >= {least}, got {getattr(args, name)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    experiment = Path(args.config).stem
    total = args.warmup + args.steps + args.profile_steps
    with tempfile.TemporaryDirectory(prefix="vitlab-profile-") as tmp:
        cfg = apply_overrides(load_config(args.config), [
            *args.overrides, f"train.output_dir={tmp}", f"train.max_steps={total}", "train.resume=null",
            "train.eval_at_start=false", "train.log_every=1000000"])
        trainer = Trainer(cfg, experiment=experiment)
        device = trainer.info.device
        gflops_machine = matmul_gflops(device)
        batch_size = cfg.data.batch_size * cfg.train.grad_accum_steps
        print(f"[vitlab] profile {args.config}: {args.warmup} warm-up steps, {args.steps} timed, "
              f"{args.profile_steps} profiled (batch {batch_size}, {torch.get_num_threads()} threads)", flush=True)
        for _ in range(args.warmup):
            trainer.train_step()
        trainer.window.flops, t0 = 0.0, time.perf_counter()
        for _ in range(args.steps):
            trainer.train_step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        elapsed = time.perf_counter() - t0
        flops = trainer.window.flops
        step_prof = _profiled(lambda: [trainer.train_step() for _ in range(args.profile_steps)], device)
        eval_prof = None
        if args.eval_images:
            model, readout = trainer.task.model, trainer.protocol.readout
            loader = trainer.make_eval_loader("holdout")

            def extract() -> None:
                seen = 0
                with eval_mode(model), torch.no_grad():
                    for images, _ in loader:
                        readout_features(model, images[: args.eval_images - seen].to(device), readout)
                        seen += min(len(images), args.eval_images - seen)
                        if seen >= args.eval_images:
                            break

            extract()  # warm-up (and the k-NN's first batch sizes' allocations)
            t0 = time.perf_counter()
            extract()
            eval_ms = 1e3 * (time.perf_counter() - t0) / args.eval_images
            eval_prof = _profiled(extract, device)
        trainer.logger.close()

    step_s = elapsed / args.steps
    achieved = flops / elapsed / 1e9 if flops == flops else float("nan")
    lines = [f"# Profile of `{args.config}`", "",
             f"`vitlab profile {args.config}{''.join(' ' + o for o in args.overrides)} --warmup {args.warmup} "
             f"--steps {args.steps} --profile-steps {args.profile_steps}"
             + (f" --eval-images {args.eval_images}" if args.eval_images else "") + "`", "",
             f"Machine: {device.type} ({platform.processor() or platform.machine()}), {torch.get_num_threads()} threads, "
             f"fp32 matmul {gflops_machine:.0f} GFLOP/s (1024-square, measured now); torch {torch.__version__}.", "",
             f"Training step (batch {batch_size}): {step_s:.3f} s per step, {batch_size / step_s:.1f} images/s, "
             f"{achieved:.1f} GFLOP/s achieved ({100 * achieved / gflops_machine:.0f}% of the fp32 matmul rate; "
             "analytic forward + backward FLOPs of the task, heads and losses not counted).", "",
             *_section(f"Training step ({args.profile_steps} steps profiled)", step_prof, args.top)]
    if eval_prof is not None:
        lines += [f"Evaluation feature extraction (batch {cfg.data.eval_batch_size}, no grad, timed without the "
                  f"profiler): {eval_ms:.3f} ms per image.", ""]
        lines += _section(f"Evaluation feature extraction ({args.eval_images} images, no grad)", eval_prof, args.top)
    report = "\n".join(lines)
    print(report)
    out = args.out or f"benchmarks/profile_{experiment}.md"
    if out != "-":
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(report)
        print(f"[vitlab] wrote {out}", flush=True)
    return 0
