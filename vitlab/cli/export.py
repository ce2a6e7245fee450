"""``vitlab export CKPT DIR [--weights model|student] [--eval-json FILE ...]``: a training checkpoint's
network as a pretrained folder (``model.safetensors``, ``config.json``, model card) that
``HybridViT.from_pretrained(DIR)`` loads and ``hf upload USER/NAME DIR`` shares."""

from __future__ import annotations

import argparse

from vitlab.export.checkpoint import export_checkpoint

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="vitlab checkpoint (.pt) with 'model' and 'config'")
    parser.add_argument("out_dir", help="the folder to write")
    parser.add_argument("--weights", choices=["model", "student"], default="model",
                        help="the checkpoint's model (a DINOv3 run's EMA teacher) or its student")
    parser.add_argument("--eval-json", nargs="+", action="extend", default=[], metavar="FILE",
                        help="`vitlab eval` results to show in the model card")


def run(args: argparse.Namespace) -> int:
    folder = export_checkpoint(args.checkpoint, args.out_dir, weights=args.weights, eval_json=args.eval_json)
    print(f"[vitlab] wrote {folder}/: model.safetensors, config.json, README.md ({args.weights} weights of "
          f"{args.checkpoint}); load with HybridViT.from_pretrained({str(folder)!r})")
    return 0
