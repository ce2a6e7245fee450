"""Linear probe on cached frozen features, with an lr x weight-decay grid (DINOv2's protocol, simplified).

Every (lr, weight decay) pair trains at once (one linear head each, over the same mini-batches); the
pair is chosen on the validation features, and the chosen head alone scores the test features.

Axis legend: N samples, D feature width, C classes, G grid size.
"""

from __future__ import annotations

import itertools
from typing import Sequence

import torch
import torch.nn.functional as F
from vitlab.eval.accuracy import topk_hits

__all__ = ["linear_probe"]


def linear_probe(train_feats: torch.Tensor, train_labels: torch.Tensor, val_feats: torch.Tensor,
                 val_labels: torch.Tensor, test_feats: torch.Tensor | None = None,
                 test_labels: torch.Tensor | None = None, *,
                 lrs: Sequence[float] = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1), weight_decays: Sequence[float] = (0.0,),
                 epochs: int = 20, batch_size: int = 256, num_classes: int | None = None,
                 seed: int = 0) -> dict[str, float]:
    """Train linear heads on ``train_feats`` [N, D], choose one on ``val_feats``, report it on ``test_feats``.

    Features are standardised with the training statistics; SGD with momentum 0.9 and a cosine lr.
    The test features never influence the choice (they may be omitted).

    Returns:
        ``{"linear_val_top1", "linear_lr", "linear_weight_decay"}`` and, with test features,
        ``"linear_top1", "linear_top5"`` (accuracies in %).
    """
    g = torch.Generator().manual_seed(seed)
    labels = [train_labels, val_labels] + ([test_labels] if test_labels is not None else [])
    num_classes = num_classes or int(max(t.max() for t in labels)) + 1
    x, y = train_feats.float(), train_labels.long()
    mean, std = x.mean(0), x.std(0) + 1e-6
    x, val_x = (x - mean) / std, (val_feats.float() - mean) / std
    grid = list(itertools.product(lrs, weight_decays))
    G, D = len(grid), x.shape[1]
    weight = torch.zeros(G, D, num_classes, requires_grad=True)
    bias = torch.zeros(G, 1, num_classes, requires_grad=True)
    lr_vec = torch.tensor([lr for lr, _ in grid])[:, None, None]
    wd_vec = torch.tensor([wd for _, wd in grid])[:, None, None]
    opt = torch.optim.SGD([weight, bias], lr=1.0, momentum=0.9)  # per-head lr is folded into the gradient
    steps_per_epoch = max(1, len(x) // batch_size)
    total = epochs * steps_per_epoch
    for step in range(total):
        if step % steps_per_epoch == 0:
            order = torch.randperm(len(x), generator=g)
        idx = order[(step % steps_per_epoch) * batch_size: (step % steps_per_epoch + 1) * batch_size]
        logits = torch.einsum("bd,gdc->gbc", x[idx], weight) + bias  # [G, b, C]
        loss = F.cross_entropy(logits.flatten(0, 1), y[idx].repeat(G), reduction="sum") / len(idx)
        opt.zero_grad()
        loss.backward()
        scale = 0.5 * (1 + torch.cos(torch.tensor(torch.pi * step / total)))
        with torch.no_grad():
            weight.grad.add_(weight * wd_vec).mul_(lr_vec * scale)
            bias.grad.mul_(lr_vec * scale)
        opt.step()

    def accuracy(feats: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            logits = torch.einsum("bd,gdc->gbc", feats, weight) + bias  # [G, n, C]
            hit = topk_hits(logits, labels)
            return torch.stack([hit[..., 0].float().mean(-1), hit.any(-1).float().mean(-1)], -1) * 100  # [G, 2]

    val = accuracy(val_x, val_labels)
    best = int(val[:, 0].argmax())  # the first of equals: the grid's order breaks ties
    out = {"linear_val_top1": val[best, 0].item(), "linear_lr": float(grid[best][0]),
           "linear_weight_decay": float(grid[best][1])}
    if test_feats is not None:
        test = accuracy((test_feats.float() - mean) / std, test_labels)[best]
        out |= {"linear_top1": test[0].item(), "linear_top5": test[1].item()}
    return out
