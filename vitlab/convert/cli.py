"""``vitlab convert dinov3 --from official|hf|timm CHECKPOINT --out OUT.pt [--arch NAME]``.

Writes a vitlab checkpoint (``{"model": state_dict, "config": YAML}``) and the same config as
``OUT.yaml``; everything is read from local files, never downloaded.
"""

from __future__ import annotations

import argparse

from vitlab.convert.checkpoint import save_vitlab_checkpoint
from vitlab.convert.dinov3_arch import DINOV3_ARCHS
from vitlab.convert.dinov3_hf import dinov3_from_hf
from vitlab.convert.dinov3_official import dinov3_from_official
from vitlab.convert.dinov3_timm import dinov3_from_timm
from vitlab.convert.state_dict import StateDictMismatchError

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    families = parser.add_subparsers(dest="family", metavar="FAMILY", required=True)
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
