"""``vitlab viz CKPT IMAGE ... [--out DIR] [--seg-head FILE]``: PCA of patch features, attention maps of CLS
and registers, patch-token norms and segmentation masks of a checkpoint's network (:mod:`vitlab.viz`),
written as PNG files and as tensorboard images."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.tensorboard import SummaryWriter
from torchvision.utils import save_image

from vitlab.eval.tokens import summarise_tokens, token_statistics
from vitlab.mixers import Attention
from vitlab.viz import attention_maps, colour_masks, load_images, patch_norm_maps, pca_rgb, seg_masks
from vitlab.weights import build_model_from_checkpoint

__all__ = ["add_arguments", "run"]


def _normalise(maps: torch.Tensor) -> torch.Tensor:
    lo = maps.amin(dim=(-2, -1), keepdim=True)
    hi = maps.amax(dim=(-2, -1), keepdim=True)
    return (maps - lo) / (hi - lo).clamp_min(1e-12)



def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="a vitlab checkpoint (.pt) holding `model` weights and its `config`")
    parser.add_argument("images", nargs="+", help="image files")
    parser.add_argument("--out", default="viz", help="output folder for PNGs and tensorboard events")
    parser.add_argument("--size", type=int, default=224, help="images are resized to this (rounded to the patch size)")
    parser.add_argument("--seg-head", default=None,
                        help="a head saved by `vitlab eval seg` (default: CKPT.last1.seg.pt when it exists)")


def run(args: argparse.Namespace) -> int:
    model = build_model_from_checkpoint(args.checkpoint)[0].eval()
    x = load_images(args.images, args.size, model.patch_size, model.in_channels)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        pca = pca_rgb(model.forward_features(x)["patches"])
    pca = F.interpolate(pca, size=x.shape[-2:], mode="nearest")
    save_image(pca, out / "pca.png", nrow=len(args.images))
    writer = SummaryWriter(str(out))
    writer.add_images("pca", pca)
    written = [out / "pca.png"]
    seg_head = Path(args.seg_head) if args.seg_head else Path(args.checkpoint).with_suffix(".last1.seg.pt")
    if args.seg_head and not seg_head.is_file():
        raise FileNotFoundError(f"segmentation head not found: {str(seg_head)!r}")
    if seg_head.is_file():
        saved = torch.load(seg_head, map_location="cpu", weights_only=True)
        # the images as the head saw them in training: with the data config's normalisation, when it was saved
        x_seg = load_images(args.images, args.size, model.patch_size, model.in_channels, mean=saved.get("mean"),
                            std=saved.get("std"))
        masks = colour_masks(seg_masks(model, x_seg, saved), saved["num_classes"])
        save_image(torch.cat([pca, masks]), out / "seg.png", nrow=len(args.images))  # PCA row, then masks
        writer.add_images("seg", masks)
        written.append(out / "seg.png")
    if any(isinstance(getattr(b, "mixer", None), Attention) for b in model.blocks) and model.num_cls + model.num_registers:
        maps = _normalise(attention_maps(model, x))  # [B, Q, h, w]
        maps = F.interpolate(maps, size=x.shape[-2:], mode="nearest")
        names = (["cls"] if model.num_cls else []) + [f"register{i}" for i in range(model.num_registers)]
        grid = maps.transpose(0, 1).reshape(-1, 1, *x.shape[-2:])  # one row per query token
        save_image(grid, out / "attention.png", nrow=len(args.images))
        written.append(out / "attention.png")
        for q, name in enumerate(names):
            writer.add_images(f"attention/{name}", maps[:, q : q + 1])
    norms = patch_norm_maps(model, x)
    norms = F.interpolate(norms / norms.amax().clamp_min(1e-8), size=x.shape[-2:], mode="nearest")
    save_image(norms, out / "norms.png", nrow=len(args.images))
    writer.add_images("patch_norms", norms)
    written.append(out / "norms.png")
    stats = summarise_tokens(token_statistics(model, x))
    print("token statistics: " + ", ".join(f"{k} {v:.4g}" for k, v in stats.items()))
    writer.close()
    for path in written:
        print(f"wrote {path}")
    return 0
