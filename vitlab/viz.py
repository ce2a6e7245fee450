"""``vitlab viz``: what a backbone sees, as pictures.

- PCA of patch features mapped to RGB: the first three principal components of all patch tokens
  of the given images, each min-max scaled to [0, 1] (the DINOv2/DINOv3 papers' figures).
- Attention maps of the CLS token and of each register over the patches, from the last attention
  block (mean over heads), as in "Vision Transformers Need Registers" (Darcet et al. 2024).
- Patch-token norms of the last block's output (before the final norm), one map per image, scaled
  by the largest norm over all images: high-norm outlier tokens (Darcet et al.) show as bright
  spots. The token statistics of :mod:`vitlab.eval.tokens` are printed alongside.

Written as PNG files and as tensorboard images.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F

from vitlab.mixers import Attention

__all__ = ["pca_rgb", "attention_maps", "patch_norm_maps", "add_arguments", "run"]


def pca_rgb(patches: torch.Tensor) -> torch.Tensor:
    """Patch features [B, h, w, D] -> RGB images [B, 3, h, w] in [0, 1], one PCA over all images."""
    B, h, w, D = patches.shape
    flat = patches.reshape(-1, D).float()
    flat = flat - flat.mean(dim=0, keepdim=True)
    _, _, v = torch.linalg.svd(flat, full_matrices=False)
    comps = flat @ v[:3].T  # [B*h*w, 3]
    lo, hi = comps.min(dim=0).values, comps.max(dim=0).values
    comps = (comps - lo) / (hi - lo).clamp_min(1e-8)
    return comps.reshape(B, h, w, 3).permute(0, 3, 1, 2)


@torch.no_grad()
def attention_maps(model, x: torch.Tensor) -> torch.Tensor:
    """Attention of CLS and registers over patches in the last attention block: [B, cls + R, h, w].

    Takes that block's softmax(q k^T / sqrt(d)) from :meth:`Attention.attention_weights`, which
    shares the forward's projections, norms and RoPE, so it works with every attention backend,
    flash and SDPA included.
    """
    blocks = [i for i, b in enumerate(model.blocks) if isinstance(getattr(b, "mixer", None), Attention)]
    if not blocks:
        raise ValueError("the model has no attention block to take attention maps from")
    last = blocks[-1]
    tokens, layout = model.prepare_tokens(x)
    for i in range(last):
        tokens = model.run_block(i, tokens, layout)
    block = model.blocks[last]
    weights = block.mixer.attention_weights(block.norm1(model.block_tokens(last, tokens, layout)), layout)
    n = layout.num_patches
    maps = weights[:, :, n : layout.num_tokens, :n].mean(dim=1)  # CLS, registers over patches: [B, cls+R, N]
    return maps.reshape(x.shape[0], -1, layout.grid_h, layout.grid_w)


@torch.no_grad()
def patch_norm_maps(model, x: torch.Tensor) -> torch.Tensor:
    """L2 norms of the patch tokens after the last block (before the final norm): [B, 1, h, w]."""
    features = model.forward_features(x)
    B, h, w, _ = features["patches"].shape
    return features["prenorm"][:, : h * w].float().norm(dim=-1).reshape(B, 1, h, w)


def _normalise(maps: torch.Tensor) -> torch.Tensor:
    lo = maps.amin(dim=(-2, -1), keepdim=True)
    hi = maps.amax(dim=(-2, -1), keepdim=True)
    return (maps - lo) / (hi - lo).clamp_min(1e-12)


def load_images(paths: list[str], size: int, patch_size: int, in_channels: int) -> torch.Tensor:
    from torchvision.io import ImageReadMode, decode_image
    from torchvision.transforms import v2

    side = max(patch_size, size // patch_size * patch_size)
    mode = ImageReadMode.GRAY if in_channels == 1 else ImageReadMode.RGB
    tf = v2.Compose([v2.Resize((side, side), antialias=True), v2.ToDtype(torch.float32, scale=True),
                     v2.Normalize([0.5] * in_channels, [0.5] * in_channels)])
    images = []
    for p in paths:
        if not Path(p).is_file():
            raise FileNotFoundError(f"image not found: {p!r}")
        images.append(tf(decode_image(p, mode=mode)))
    return torch.stack(images)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="a vitlab checkpoint (.pt) holding `model` weights and its `config`")
    parser.add_argument("images", nargs="+", help="image files")
    parser.add_argument("--out", default="viz", help="output folder for PNGs and tensorboard events")
    parser.add_argument("--size", type=int, default=224, help="images are resized to this (rounded to the patch size)")


def run(args: argparse.Namespace) -> int:
    from torch.utils.tensorboard import SummaryWriter
    from torchvision.utils import save_image

    from vitlab.engine.checkpoint import build_model_from_checkpoint

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
    from vitlab.eval.tokens import summarise_tokens, token_statistics

    stats = summarise_tokens(token_statistics(model, x))
    print("token statistics: " + ", ".join(f"{k} {v:.4g}" for k, v in stats.items()))
    writer.close()
    for path in written:
        print(f"wrote {path}")
    return 0
