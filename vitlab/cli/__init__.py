"""The ``vitlab`` command: thin subcommands that parse arguments and call the library.

One module per subcommand in this package (``vitlab train``: :mod:`vitlab.cli.train`), each exposing
``add_arguments(parser)`` and ``run(args) -> int``. :data:`COMMANDS` names them, and a subcommand's module
is imported only when that command runs: ``vitlab --help`` imports none of them.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from vitlab.config import ConfigInstantiationError

__all__ = ["main", "COMMANDS"]

COMMANDS: dict[str, tuple[str, str]] = {
    "flops": ("vitlab.cli.flops", "count FLOPs and parameters of a model config, per layer"),
    "train": ("vitlab.cli.train", "train an experiment config (torchrun-aware)"),
    "eval": ("vitlab.cli.eval",
             "k-NN / linear-probe / segmentation-probe evaluation of a checkpoint's frozen features"),
    "sweep": ("vitlab.cli.sweep", "run a grid of experiments and summarise them in a table and a plot"),
    "convert": ("vitlab.cli.convert", "convert DINOv3 weights (official, HF, timm) to vitlab checkpoints, "
                "or consolidate a sharded checkpoint into one file"),
    "export": ("vitlab.cli.export", "a checkpoint's network as model.safetensors + config.json + model card "
                                    "(a folder HybridViT.from_pretrained and the Hub read)"),
    "bench": ("vitlab.cli.bench", "throughput and memory of a config against the equivalent timm model"),
    "profile": ("vitlab.cli.profile",
                "where a training step's time goes: operators by self time, with shapes and GFLOP/s"),
    "viz": ("vitlab.cli.viz", "PCA of patch features and attention maps of a checkpoint"),
    "plot-curves": ("vitlab.cli.plot_curves",
                    "a run's online evaluation over steps against reference curves"),
    "doctor": ("vitlab.cli.doctor",
               "why a DINO run's loss sits at ln K: its measurements and the overrides to try"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] not in COMMANDS:
        parser = argparse.ArgumentParser(prog="vitlab", description="Research framework for hybrid vision backbones.")
        sub = parser.add_subparsers(dest="command", metavar="COMMAND")
        for name, (_, help_text) in COMMANDS.items():
            sub.add_parser(name, help=help_text)
        parser.parse_args(argv)  # prints the error for an unknown command, or help for -h
        parser.print_help()
        return 2
    name = argv[0]
    module_name, help_text = COMMANDS[name]
    parser = argparse.ArgumentParser(prog=f"vitlab {name}", description=help_text)
    module = importlib.import_module(module_name)
    module.add_arguments(parser)
    # options and positional overrides may come in any order: `vitlab eval knn data.val.limit=9 --checkpoint X`
    try:
        args = parser.parse_intermixed_args(argv[1:])
    except TypeError:  # argparse cannot intermix with nested sub-commands (`vitlab convert dinov3 ...`)
        args = parser.parse_args(argv[1:])
    args.command = name
    try:
        return int(module.run(args) or 0)
    except (ConfigInstantiationError, FileNotFoundError, KeyError, ValueError) as exc:
        # Bad input: one clear line, no traceback (set VITLAB_DEBUG=1 for the traceback).
        if os.environ.get("VITLAB_DEBUG"):
            raise
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"vitlab {args.command}: error: {message}", file=sys.stderr)
        return 2
