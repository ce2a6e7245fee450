"""``vitlab train CONFIG [key=value ...]``: load a config, apply overrides, train (torchrun- and Slurm-aware).

``launch.launcher=slurm`` submits the run as a Slurm job (:mod:`vitlab.slurm`) and returns; ``--wait``
follows its log until it ends and exits with its outcome.

``--multirun`` (hydra's flag) hands the config and its sweep overrides (``key=a,b``) to
``vitlab sweep``, which trains and evaluates every combination.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from vitlab.cli import main
from vitlab.config import apply_overrides, load_config
from vitlab.engine import distributed
from vitlab.engine.trainer import train
from vitlab.slurm import check_launch, submit_train

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="experiment config file (.py or .yaml)")
    parser.add_argument("overrides", nargs="*", help="hydra-grammar overrides, e.g. train.max_steps=100")
    parser.add_argument("--multirun", "-m", action="store_true",
                        help="sweep: run every combination of comma-separated overrides (as `vitlab sweep`)")
    parser.add_argument("--jobs", type=int, default=1, help="with --multirun: training runs at once")
    parser.add_argument("--wait", action="store_true",
                        help="with launch.launcher=slurm: follow the job's log until it ends, exit with its status")


def run(args: argparse.Namespace) -> int:
    if args.multirun:
        return main(["sweep", args.config, *args.overrides, "--jobs", str(args.jobs)])
    cfg = apply_overrides(load_config(args.config), args.overrides)
    if cfg.get("launch") is not None and cfg.launch.launcher != "local":
        check_launch(cfg.launch)
        return submit_train(cfg, args.config, args.overrides, experiment=Path(args.config).stem, wait=args.wait)
    try:
        train(cfg, experiment=Path(args.config).stem)
    finally:
        distributed.cleanup()
    return 0
