"""``vitlab train CONFIG [key=value ...]``: load a config, apply overrides, train (torchrun-aware)."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="experiment config file (.py or .yaml)")
    parser.add_argument("overrides", nargs="*", help="hydra-grammar overrides, e.g. train.max_steps=100")


def run(args: argparse.Namespace) -> int:
    from vitlab.config import apply_overrides, load_config
    from vitlab.engine import distributed
    from vitlab.engine.trainer import train

    cfg = apply_overrides(load_config(args.config), args.overrides)
    try:
        train(cfg, experiment=Path(args.config).stem)
    finally:
        distributed.cleanup()
    return 0
