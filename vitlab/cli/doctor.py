"""``vitlab doctor RUN_DIR [--batches N]``: why a DINO run's loss sits at ln K: its measurements and the
overrides to try (:mod:`vitlab.doctor`)."""

from __future__ import annotations

import argparse

import torch

from vitlab.doctor import diagnose, report

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="a DINO run's directory (config.yaml, metrics.jsonl)")
    parser.add_argument("--batches", type=int, default=2, help="training batches whose crops are measured")


def run(args: argparse.Namespace) -> int:
    torch.manual_seed(0)
    print(report(*diagnose(args.run_dir, batches=args.batches)))
    return 0
