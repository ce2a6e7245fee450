"""What a backbone sees, as pictures (``vitlab viz``: :mod:`vitlab.cli.viz`).

- PCA of patch features mapped to RGB: the first three principal components of all patch tokens
  of the given images, each min-max scaled to [0, 1] (the DINOv2/DINOv3 papers' figures).
- Attention maps of the CLS token and of each register over the patches, from the last attention
  block (mean over heads), as in "Vision Transformers Need Registers" (Darcet et al. 2024).
- Patch-token norms of the last block's output (before the final norm), one map per image, scaled
  by the largest norm over all images: high-norm outlier tokens (Darcet et al.) show as bright
  spots. The token statistics of :mod:`vitlab.eval.tokens` are printed alongside.
- Predicted masks of the linear segmentation probe (a head saved by ``vitlab eval seg``), one colour
  per class (background black), under the PCA maps of the same images.

Written as PNG files and as tensorboard images.
"""

from __future__ import annotations

from pathlib import Path

import torch

from vitlab._moved import moved
from vitlab.eval.seg import LinearSegHead, patch_feature_maps
from vitlab.mixers import Attention

__all__ = ["pca_rgb", "attention_maps", "patch_norm_maps", "seg_masks", "colour_masks", "load_images"]


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


@torch.no_grad()
def seg_masks(model, x: torch.Tensor, saved: dict) -> torch.Tensor:
    """Classes [B, H, W] the saved segmentation head (``vitlab eval seg``'s ``.seg.pt``) predicts for images [B, C, H, W]."""
    head = LinearSegHead(in_dim=saved["in_dim"], num_classes=saved["num_classes"])
    head.load_state_dict(saved["head"])
    feats = patch_feature_maps(model, x, layers=saved["seg_layers"], readout=saved["readout"])
    return head.eval()(feats.float(), size=x.shape[-2:]).argmax(1)


def colour_masks(masks: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Classes [B, H, W] -> RGB [B, 3, H, W] in [0, 1]: class 0 (background) black, the others fixed colours."""
    palette = torch.rand(num_classes, 3, generator=torch.Generator().manual_seed(0)) * 0.8 + 0.2
    palette[0] = 0
    return palette[masks.long()].permute(0, 3, 1, 2)


def load_images(paths: list[str], size: int, patch_size: int, in_channels: int, *, mean: list[float] | None = None,
                std: list[float] | None = None) -> torch.Tensor:
    from torchvision.io import ImageReadMode, decode_image
    from torchvision.transforms import v2

    side = max(patch_size, size // patch_size * patch_size)
    mode = ImageReadMode.GRAY if in_channels == 1 else ImageReadMode.RGB
    tf = v2.Compose([v2.Resize((side, side), antialias=True), v2.ToDtype(torch.float32, scale=True),
                     v2.Normalize(list(mean or [0.5] * in_channels), list(std or [0.5] * in_channels))])
    images = []
    for p in paths:
        if not Path(p).is_file():
            raise FileNotFoundError(f"image not found: {p!r}")
        images.append(tf(decode_image(p, mode=mode)))
    return torch.stack(images)


# ``vitlab viz`` itself: :mod:`vitlab.cli.viz` (the names raise an error naming it, for one release)
__getattr__ = moved(__name__, {"add_arguments": "vitlab.cli.viz.add_arguments", "run": "vitlab.cli.viz.run"})
