"""Top-k accuracy and evaluation mode: the two helpers every scorer (the classification task, k-NN,
the linear probe) and every feature extractor share."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

__all__ = ["topk_hits", "topk_correct", "eval_mode"]


def topk_hits(scores: torch.Tensor, labels: torch.Tensor, k: int = 5) -> torch.Tensor:
    """Whether each sample's label is its j-th best score, for j < min(k, C).

    Args:
        scores: ``[..., B, C]`` logits or votes (leading dims: e.g. a grid of probes).
        labels: ``[B]`` class indices.

    Returns:
        bool ``[..., B, min(k, C)]``: column 0 is top-1, ``any`` over the columns is top-k.
    """
    top = scores.topk(min(k, scores.shape[-1]), dim=-1).indices
    return top == labels.to(top.device).long()[:, None]


def topk_correct(logits: torch.Tensor, labels: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> dict[int, torch.Tensor]:
    """Count of samples whose label is among the top-k logits, for each k. logits [B, C], labels [B]."""
    hit = topk_hits(logits, labels, max(ks))
    return {k: hit[..., :k].any(dim=-1).sum() for k in ks}


@contextlib.contextmanager
def eval_mode(model: nn.Module | None) -> Iterator[nn.Module | None]:
    """``model`` in eval mode inside the block, back in its own mode after it (also on an exception).
    ``None`` (raw pixels: no model) passes through."""
    was_training = model.training if model is not None else False
    if model is not None:
        model.eval()
    try:
        yield model
    finally:
        if model is not None:
            model.train(was_training)
