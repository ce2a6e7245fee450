"""``vitlab convert dinov3 --from official|hf|timm CHECKPOINT --out OUT.pt [--arch NAME]`` and
``vitlab convert --consolidate CKPT_DIR OUT.pt``.

``dinov3`` writes a vitlab checkpoint (``{"model": state_dict, "config": YAML}``) and the same config
as ``OUT.yaml``; everything is read from local files, never downloaded.

``--consolidate`` turns a sharded checkpoint directory (``train.checkpoint_format=sharded``:
``<run>/checkpoints/step_<N>/`` or ``best/``) into the single-file format, with every key of a
training checkpoint (model, task, optimizer, scaler, step, data, rng, best, world_size, config), for
``vitlab eval``, ``vitlab viz``, ``train.init_from`` and the converters. It runs in one process on
any machine, whatever the number of ranks that wrote the shards.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from vitlab.convert.checkpoint import save_vitlab_checkpoint
from vitlab.convert.dinov3_arch import DINOV3_ARCHS
from vitlab.convert.dinov3_hf import dinov3_from_hf
from vitlab.convert.dinov3_official import dinov3_from_official
from vitlab.convert.dinov3_timm import dinov3_from_timm
from vitlab.convert.state_dict import StateDictMismatchError
from vitlab.engine.checkpoint import save_atomic
from vitlab.engine.sharded import consolidate as read_consolidated

__all__ = ["add_arguments", "run", "consolidate"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--consolidate", nargs=2, metavar=("CKPT_DIR", "OUT.pt"), default=None,
                        help="write the sharded checkpoint directory CKPT_DIR as the single file OUT.pt "
                             "(no FAMILY then)")
    families = parser.add_subparsers(dest="family", metavar="FAMILY", required=False)
    p = families.add_parser("dinov3", help="DINOv3 ViT weights", description="convert DINOv3 ViT weights to vitlab")
    p.add_argument("--from", dest="source", required=True, choices=("official", "hf", "timm"),
                   help="checkpoint format: facebookresearch/dinov3 .pth, Hugging Face directory/file, timm state dict")
    p.add_argument("checkpoint", help="the checkpoint file (hf: a directory with config.json, or a weights file)")
    p.add_argument("--out", required=True, help="the vitlab checkpoint to write (.pt); the config also goes to .yaml")
    p.add_argument("--arch", choices=sorted(DINOV3_ARCHS), default=None,
                   help="a released architecture; default: inferred from the checkpoint")
    p.add_argument("--num-heads", type=int, default=None,
                   help="head count, for an official/timm state dict it cannot be inferred from")
    p.add_argument("--hf-config", default=None, help="config.json of an HF weights file, if not next to it")


def run(args: argparse.Namespace) -> int:
    if args.consolidate:
        if args.family:
            raise ValueError(f"--consolidate takes no FAMILY (got {args.family!r}): "
                             "`vitlab convert --consolidate CKPT_DIR OUT.pt`")
        return consolidate(*args.consolidate)
    if not args.family:
        raise ValueError("give a FAMILY (`vitlab convert dinov3 ...`) or `--consolidate CKPT_DIR OUT.pt`")
    try:
        if args.source == "official":
            model, cfg = dinov3_from_official(args.checkpoint, args.arch, num_heads=args.num_heads, return_config=True)
        elif args.source == "hf":
            model, cfg = dinov3_from_hf(args.checkpoint, args.hf_config, arch=args.arch, return_config=True)
        else:
            model, cfg = dinov3_from_timm(args.checkpoint, args.arch, num_heads=args.num_heads, return_config=True)
    except (StateDictMismatchError, ValueError, FileNotFoundError) as exc:
        print(f"vitlab convert: {exc}")
        return 1
    out = save_vitlab_checkpoint(model, cfg, args.out)
    params = sum(p.numel() for p in model.parameters())
    print(f"wrote {out} ({model.dim}-wide, {model.num_blocks} blocks, {model.num_registers} registers, "
          f"{params / 1e6:.2f}M parameters) and {out.with_suffix('.yaml')}")
    return 0


def consolidate(ckpt_dir: str, out: str) -> int:
    """``--consolidate``: the sharded checkpoint ``ckpt_dir`` written as the single file ``out``."""
    ckpt = read_consolidated(Path(ckpt_dir).expanduser())
    path = save_atomic(ckpt, Path(out).expanduser())
    params = sum(v.numel() for v in ckpt["model"].values())
    print(f"wrote {path}: step {ckpt['step']} of a world size {ckpt['world_size']} run, "
          f"{params / 1e6:.2f}M model values, {len(ckpt['task'])} other task entries")
    return 0
