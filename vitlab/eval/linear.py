"""Linear probe on cached frozen features, with a small learning-rate grid (DINOv2's protocol, simplified).

All learning rates train at once (one ``Linear`` per lr over the same mini-batches); the lr is chosen
on a held-out 10% of the training features, and its head is reported on the test features.

Axis legend: N samples, D feature width, C classes, G lr-grid size.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

__all__ = ["linear_probe"]


def linear_probe(train_feats: torch.Tensor, train_labels: torch.Tensor, test_feats: torch.Tensor,
                 test_labels: torch.Tensor, *, lrs: Sequence[float] = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1),
                 epochs: int = 20, batch_size: int = 256, weight_decay: float = 0.0, holdout: float = 0.1,
                 num_classes: int | None = None, seed: int = 0) -> dict[str, float]:
    """Train linear classifiers on ``train_feats`` [N, D] and report the best-on-holdout one on ``test_feats``.

    Features are standardised with the training statistics; SGD with momentum 0.9 and a cosine lr.

    Returns:
        ``{"linear_top1", "linear_top5", "linear_lr", "linear_holdout_top1"}`` (accuracies in %).
    """
    g = torch.Generator().manual_seed(seed)
    num_classes = num_classes or int(max(train_labels.max(), test_labels.max())) + 1
    x, y = train_feats.float(), train_labels.long()
    mean, std = x.mean(0), x.std(0) + 1e-6
    x, test_x = (x - mean) / std, (test_feats.float() - mean) / std
    perm = torch.randperm(len(x), generator=g)
    n_hold = max(1, int(holdout * len(x))) if len(x) > 10 else 0
    hold, fit = perm[:n_hold], perm[n_hold:]
    G, D = len(lrs), x.shape[1]
    weight = torch.zeros(G, D, num_classes, requires_grad=True)
    bias = torch.zeros(G, 1, num_classes, requires_grad=True)
    lr_vec = torch.tensor(list(lrs))[:, None, None]
    opt = torch.optim.SGD([weight, bias], lr=1.0, momentum=0.9)  # per-head lr is folded into the gradient
    steps_per_epoch = max(1, len(fit) // batch_size)
    total = epochs * steps_per_epoch
    for step in range(total):
        if step % steps_per_epoch == 0:
            order = fit[torch.randperm(len(fit), generator=g)]
        idx = order[(step % steps_per_epoch) * batch_size: (step % steps_per_epoch + 1) * batch_size]
        logits = torch.einsum("bd,gdc->gbc", x[idx], weight) + bias  # [G, b, C]
        loss = F.cross_entropy(logits.flatten(0, 1), y[idx].repeat(G), reduction="sum") / len(idx)
        opt.zero_grad()
        loss.backward()
        scale = 0.5 * (1 + torch.cos(torch.tensor(torch.pi * step / total)))
        with torch.no_grad():
            weight.grad.add_(weight, alpha=weight_decay).mul_(lr_vec * scale)
            bias.grad.mul_(lr_vec * scale)
        opt.step()

    def accuracy(feats: torch.Tensor, labels: torch.Tensor, head: int | None = None) -> torch.Tensor:
        with torch.no_grad():
            logits = torch.einsum("bd,gdc->gbc", feats, weight) + bias  # [G, n, C]
            top = logits.topk(min(5, num_classes), dim=-1).indices
            hit = top == labels[None, :, None]
            return torch.stack([hit[..., 0].float().mean(-1), hit.any(-1).float().mean(-1)], -1) * 100  # [G, 2]

    best = int(accuracy(x[hold], y[hold])[:, 0].argmax()) if n_hold else 0
    test = accuracy(test_x, test_labels.long())[best]
    return {"linear_top1": test[0].item(), "linear_top5": test[1].item(), "linear_lr": float(lrs[best]),
            "linear_holdout_top1": accuracy(x[hold], y[hold])[best, 0].item() if n_hold else float("nan")}
