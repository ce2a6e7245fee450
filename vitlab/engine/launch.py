"""``vitlab train CONFIG [key=value ...]``: load a config, apply overrides, train (torchrun-aware).

``--multirun`` (hydra's flag) hands the config and its sweep overrides (``key=a,b``) to
``vitlab sweep``, which trains and evaluates every combination.
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="experiment config file (.py or .yaml)")
    parser.add_argument("overrides", nargs="*", help="hydra-grammar overrides, e.g. train.max_steps=100")
    parser.add_argument("--multirun", "-m", action="store_true",
                        help="sweep: run every combination of comma-separated overrides (as `vitlab sweep`)")
    parser.add_argument("--jobs", type=int, default=1, help="with --multirun: training runs at once")


def run(args: argparse.Namespace) -> int:
    if args.multirun:
        from vitlab.cli import main

        return main(["sweep", args.config, *args.overrides, "--jobs", str(args.jobs)])
    from vitlab.config import apply_overrides, load_config
    from vitlab.engine import distributed
    from vitlab.engine.trainer import train

    cfg = apply_overrides(load_config(args.config), args.overrides)
    try:
        train(cfg, experiment=Path(args.config).stem)
    finally:
        distributed.cleanup()
    return 0
