"""Weighted k-NN classification of frozen features (Wu et al. 2018; the protocol of DINO, Caron et al. 2021).

Features are L2-normalised; each of the k nearest training samples (cosine similarity ``s``) votes
for its class with weight ``exp(s / T)``, T = 0.07. Similarities are computed in float64: features
of an untrained network can be nearly identical across images (1 - cosine ~ 1e-10, below float32's
resolution), where a float32 comparison would rank neighbours at random.

Axis legend: N train samples, M test samples, D feature width, C classes, K neighbours.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from vitlab.eval.accuracy import topk_hits

__all__ = ["knn_eval", "knn_predict", "nearest_neighbours"]


@torch.no_grad()
def nearest_neighbours(train_feats: torch.Tensor, test_feats: torch.Tensor, *, k: int,
                       chunk_size: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine similarities [M, K] (float64, descending) and indices [M, K] of each test row's ``k`` nearest train rows."""
    train = F.normalize(train_feats.double(), dim=1)
    test = F.normalize(test_feats.double(), dim=1)
    k = min(k, train.shape[0])
    sims, idx = zip(*((chunk @ train.T).topk(k, dim=1) for chunk in test.split(chunk_size)))
    return torch.cat(sims), torch.cat(idx)


def _vote(sims: torch.Tensor, idx: torch.Tensor, train_labels: torch.Tensor, *, k: int, temperature: float,
          num_classes: int) -> torch.Tensor:
    weights = (sims[:, :k] / temperature).exp()  # [M, k]
    votes = torch.zeros(sims.shape[0], num_classes, dtype=weights.dtype, device=weights.device)
    return votes.scatter_add_(1, train_labels[idx[:, :k]], weights)  # [M, C]


@torch.no_grad()
def knn_predict(train_feats: torch.Tensor, train_labels: torch.Tensor, test_feats: torch.Tensor, *,
                k: int, temperature: float = 0.07, num_classes: int | None = None,
                chunk_size: int = 1024) -> torch.Tensor:
    """Class scores [M, C] of the test features by weighted k-NN vote.

    Args:
        train_feats: [N, D]; train_labels: [N]; test_feats: [M, D] (normalised here).
        k: neighbours (clipped to N).
        chunk_size: test rows per similarity matrix, bounding memory at ``chunk_size x N``.
    """
    num_classes = num_classes or int(train_labels.max()) + 1
    sims, idx = nearest_neighbours(train_feats, test_feats, k=k, chunk_size=chunk_size)
    return _vote(sims, idx, train_labels, k=k, temperature=temperature, num_classes=num_classes)


def knn_eval(train_feats: torch.Tensor, train_labels: torch.Tensor, test_feats: torch.Tensor,
             test_labels: torch.Tensor, *, ks: Sequence[int] = (10, 20), temperature: float = 0.07,
             num_classes: int | None = None) -> dict[str, float]:
    """Top-1 and top-5 accuracy (%) of weighted k-NN for every k (the neighbours are searched once).

    Returns:
        ``{"knn_k10_top1": ..., "knn_k10_top5": ..., "knn_k20_top1": ..., ...}``
    """
    num_classes = num_classes or int(max(train_labels.max(), test_labels.max())) + 1
    sims, idx = nearest_neighbours(train_feats, test_feats, k=max(ks))
    out = {}
    for k in ks:
        scores = _vote(sims, idx, train_labels, k=k, temperature=temperature, num_classes=num_classes)
        hit = topk_hits(scores, test_labels)
        out[f"knn_k{k}_top1"] = 100 * hit[:, 0].float().mean().item()
        out[f"knn_k{k}_top5"] = 100 * hit.any(dim=1).float().mean().item()
    return out
