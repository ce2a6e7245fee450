"""``vitlab flops CONFIG [key=value ...]``: FLOPs and parameters of a model config, per layer (:mod:`vitlab.flops`);
``--match OTHER --vary KEY``: the equal-FLOPs control (:mod:`vitlab.flops_match`); ``--memory``: the memory
plan of a training step (:mod:`vitlab.memory`).
"""

from __future__ import annotations

import argparse
import json
import sys

from omegaconf import DictConfig

from vitlab.config import apply_overrides, instantiate, load_config, typed_sections
from vitlab.flops import format_report, per_image
from vitlab.flops_match import DEFAULT_TOLERANCE, match_flops
from vitlab.memory import format_plan, plan_memory

__all__ = ["add_arguments", "run", "run_match"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="a Python or YAML config file defining `model`")
    parser.add_argument("overrides", nargs="*", help="hydra-style overrides, e.g. model.num_registers=4")
    parser.add_argument("--image-size", nargs=2, type=int, metavar=("H", "W"), help="default: the model's image_size")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="count per image within a batch of this size (Hyena's long convolution picks its "
                             "algorithm by batch and grid; default 1)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    match = parser.add_argument_group("equal-FLOPs control (vitlab.flops_match)")
    match.add_argument("--match", metavar="OTHER_CONFIG",
                       help="search values of the --vary keys that bring CONFIG's forward FLOPs within 0.5%% of "
                            "OTHER_CONFIG's at --image-size (default: OTHER's image_size); prints the override line")
    match.add_argument("--vary", action="append", metavar="KEY",
                       help="a numeric key of CONFIG to search (FFN ratio, width, depth); repeat it to tie several "
                            "keys to one value, e.g. the FFN ratio of two block types")
    match.add_argument("--step", type=float, default=None,
                       help="search grid: default 1 for integer keys (64: multiples of 64), 0.1 for float keys; "
                            "0 searches a float key exactly")
    memory = parser.add_argument_group("memory plan (a run config: model, task, data, optim, train)")
    memory.add_argument("--memory", action="store_true",
                        help="plan the memory per device of a training step instead (vitlab.memory): parameters, "
                             "gradients, optimizer state, frozen copies, activations; --batch-size is then the "
                             "global batch (default data.batch_size)")
    memory.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"), help="autocast precision")
    memory.add_argument("--world-size", type=int, default=1, help="ranks the batch and (fsdp) the state split over")
    memory.add_argument("--strategy", default="ddp", choices=("ddp", "fsdp"), help="replicated or sharded state")


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    apply_overrides(cfg, args.overrides)
    if "model" not in cfg:
        raise SystemExit(f"error: config {args.config!r} defines no `model`")
    if bool(args.match) != bool(args.vary):
        raise ValueError("--match OTHER_CONFIG and --vary KEY go together")
    if args.match:
        if args.memory:
            raise ValueError("--match counts FLOPs; it does not plan memory (drop --memory)")
        return run_match(cfg, args)
    if args.memory:
        return _memory(cfg, args)
    # Built on the meta device: no memory for weights, so any size counts in seconds.
    model = instantiate(cfg.model, device="meta")
    batch_size = 1 if args.batch_size is None else args.batch_size
    if batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {batch_size}")
    report = per_image(model.flop_report(args.image_size, batch_size))
    params = sum(p.numel() for p in model.parameters())
    if args.json:
        parts = [report["stem"], report["head"], *report["layers"]]
        fwd = sum(p["flops"] for p in parts)
        out = {
            "config": args.config,
            "image_size": report["image_size"],
            "batch_size": batch_size,
            "flops": fwd,
            "train_flops": fwd + sum(p["backward_flops"] for p in parts),
            "params": params,
            "tokens": report["tokens"],
            "padding": report["padding"],
            "stem": report["stem"],
            "head": report["head"],
            "layers": report["layers"],
        }
        json.dump(out, sys.stdout)
        sys.stdout.write("\n")
    else:
        print(format_report(report, params))
    return 0


def _memory(cfg, args: argparse.Namespace) -> int:
    """``--memory``: the plan of :func:`vitlab.memory.plan_memory` for the run config ``cfg``."""
    missing = [k for k in ("task", "data", "optim", "train") if k not in cfg]
    if missing:
        raise SystemExit(f"error: --memory plans a training step: config {args.config!r} defines no "
                         f"{', '.join(missing)} (give an experiment, not a model config)")
    plan = plan_memory(typed_sections(cfg), batch_size=args.batch_size, precision=args.precision, world_size=args.world_size,
                       strategy=args.strategy, config_name=args.config)
    if args.json:
        json.dump({"config": args.config, "batch_size": plan.batch_size, "micro_batch": plan.micro_batch,
                   "world_size": plan.world_size, "strategy": plan.strategy, "precision": plan.precision,
                   "activation_checkpointing": plan.checkpointing, "parts": plan.parts, "total": plan.total}, sys.stdout)
        sys.stdout.write("\n")
    else:
        print(format_plan(plan))
    return 0


def run_match(cfg: DictConfig, args: argparse.Namespace) -> int:
    """``vitlab flops CONFIG --match OTHER --vary KEY``: the override line of :func:`match_flops`, then both counts."""
    found = match_flops(cfg, args.match, args.vary, image_size=args.image_size, step=args.step,
                        batch_size=args.batch_size or 1)
    H, W = found.image_size
    if args.json:
        json.dump({"config": args.config, "match": args.match, "overrides": found.overrides, "flops": found.flops,
                   "target_flops": found.target_flops, "relative_difference": found.relative_difference,
                   "image_size": [H, W]}, sys.stdout)
        sys.stdout.write("\n")
        return 0
    print(" ".join(found.overrides))
    print(f"{args.config}: {found.flops / 1e9:.4f} GFLOPs ({found.flops:,}) forward per image at {H}x{W} with that line")
    print(f"{args.match}: {found.target_flops / 1e9:.4f} GFLOPs ({found.target_flops:,}), the target; "
          f"difference {found.relative_difference:+.3%} (tolerance {DEFAULT_TOLERANCE:.1%})")
    return 0
