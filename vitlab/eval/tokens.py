"""What registers are for (Darcet et al. 2024, "Vision Transformers Need Registers"): per-layer token
statistics of a backbone on a fixed batch of images.

For the output of every block (the residual stream, before the final norm):

- ``outliers``: the fraction of patch tokens whose L2 norm exceeds ``outlier_factor`` (default 4)
  times the median patch-token norm of that layer over the batch. Darcet et al. find such
  high-norm tokens (about 10x the others in their ViT-L) in models without registers; a relative
  threshold makes the measure independent of the model's scale.
- ``norm_patches``, ``norm_cls``, ``norm_registers``: the mean norm of each kind of token.

For every attention block, from its attention probabilities (:meth:`Attention.attention_weights`,
mean over heads and images): the share of the CLS token's attention that goes to patches, to CLS
itself, to registers (and to padding, for a padded attention block); the shares sum to 1.

Axis legend: B images, T tokens, D width, H heads.
"""

from __future__ import annotations

import torch
from torch import nn

from vitlab.mixers import Attention
from vitlab.eval.accuracy import eval_mode

__all__ = ["outlier_fraction", "attention_shares", "token_statistics", "summarise_tokens"]


def outlier_fraction(norms: torch.Tensor, factor: float = 4.0) -> float:
    """Fraction of entries of ``norms`` (any shape) above ``factor`` times their median."""
    flat = norms.flatten().float()
    return (flat > factor * flat.median()).float().mean().item()


def attention_shares(weights: torch.Tensor, num_patches: int, num_cls: int, num_registers: int) -> dict[str, float]:
    """Where the CLS query's attention goes: ``weights`` [B, H, T, T] (query by key) -> shares summing to 1."""
    if num_cls == 0:
        raise ValueError("attention shares need a CLS token (the model has num_cls=0)")
    row = weights[:, :, num_patches].float().mean(dim=(0, 1))  # [T]: the CLS query, mean over images and heads
    r0 = num_patches + num_cls
    shares = {"patches": row[:num_patches].sum(), "cls": row[num_patches:r0].sum(),
              "registers": row[r0:r0 + num_registers].sum(), "padding": row[r0 + num_registers:].sum()}
    return {k: v.item() for k, v in shares.items()}


@torch.no_grad()
def token_statistics(model: nn.Module, images: torch.Tensor, *, outlier_factor: float = 4.0) -> dict[str, float]:
    """Per-layer token statistics of ``model`` (a :class:`HybridViT`) on ``images`` [B, C, H, W].

    Returns:
        ``{"layer{i}/outliers", "layer{i}/norm_patches", "layer{i}/norm_cls", "layer{i}/norm_registers",
        "layer{i}/cls_attn_patches", ...}``: norms for every block, attention shares for attention blocks
        of a model with a CLS token; absent kinds of token are left out.
    """
    with eval_mode(model):
        tokens, layout = model.prepare_tokens(images)
        n, r0, R = layout.num_patches, layout.register_start, layout.num_registers
        out: dict[str, float] = {}
        for i, block in enumerate(model.blocks):
            if isinstance(getattr(block, "mixer", None), Attention) and layout.num_cls:
                x = model.block_tokens(i, tokens, layout)
                weights = block.mixer.attention_weights(block.norm1(x), layout)
                for kind, share in attention_shares(weights, n, layout.num_cls, R).items():
                    if kind != "padding" or x.shape[1] > layout.num_tokens:
                        out[f"layer{i}/cls_attn_{kind}"] = share
            tokens = model.run_block(i, tokens, layout)
            norms = tokens.float().norm(dim=-1)  # [B, T]
            out[f"layer{i}/outliers"] = outlier_fraction(norms[:, :n], outlier_factor)
            out[f"layer{i}/norm_patches"] = norms[:, :n].mean().item()
            if layout.num_cls:
                out[f"layer{i}/norm_cls"] = norms[:, n:r0].mean().item()
            if R:
                out[f"layer{i}/norm_registers"] = norms[:, r0:r0 + R].mean().item()
    return out


def summarise_tokens(stats: dict[str, float]) -> dict[str, float]:
    """A row for a table: the largest outlier fraction over layers, and the last layer's norms and shares."""
    layers = sorted({int(k.split("/")[0].removeprefix("layer")) for k in stats})
    last = layers[-1]
    attn = [i for i in layers if f"layer{i}/cls_attn_patches" in stats]
    row = {"outliers_max": max(stats[f"layer{i}/outliers"] for i in layers)}
    row |= {k.split("/")[1]: v for k, v in stats.items() if k.startswith(f"layer{last}/norm_")}
    if attn:
        row |= {k.split("/")[1]: v for k, v in stats.items() if k.startswith(f"layer{attn[-1]}/cls_attn_")}
    return row
