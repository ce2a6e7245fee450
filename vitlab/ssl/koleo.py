"""KoLeo regulariser (Sablayrolles et al. 2019, "Spreading vectors for similarity search"), applied
to the student's CLS features in DINOv2 and DINOv3 (Simeoni et al. 2025, "DINOv3").

The Kozachenko-Leonenko entropy estimator grows with the log distance of each point to its nearest
neighbour; maximising it spreads the L2-normalised features over the sphere.

Axis legend: B samples, D feature width.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["KoLeoLoss", "koleo_loss"]


def koleo_loss(features: torch.Tensor, *, eps: float = 1e-8) -> torch.Tensor:
    """``-mean_i log(||z_i - z_nn(i)|| + eps)`` on ``z = normalize(features)``.

    Duplicate samples stay finite: as in DINOv3 the distance is taken of ``z_i - z_j + eps``
    (``F.pairwise_distance``), so two identical rows are about ``eps * sqrt(D)`` apart and the
    gradient of the norm exists; the log then adds ``eps`` again.

    Batch size 1 has no neighbour; rather than return a meaningless number (DINOv3 would pair the
    sample with itself and return about ``-log(2e-8)``), this raises. Use ``drop_last=True`` in the
    loader, or skip the term for a one-sample batch.

    Args:
        features: student CLS features before the head, ``[B, D]`` with ``B >= 2``.
        eps: numerical floor of the distance.

    Returns:
        Scalar loss, computed in float32.

    Raises:
        ValueError: if ``B < 2``.
    """
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"KoLeo needs [B, D] features with B >= 2, got shape {tuple(features.shape)}")
    z = F.normalize(features.float(), p=2, dim=-1, eps=eps)  # [B, D]
    with torch.no_grad():
        # On the unit sphere the largest inner product is the nearest neighbour.
        similarity = z @ z.T  # [B, B]
        similarity.fill_diagonal_(-2.0)  # below any cosine, so a sample never picks itself
        neighbour = similarity.argmax(dim=-1)  # [B]
    distance = F.pairwise_distance(z, z[neighbour], p=2, eps=eps)  # [B]
    return -torch.log(distance + eps).mean()


class KoLeoLoss(nn.Module):
    """Module form of :func:`koleo_loss`."""

    def __init__(self, *, eps: float = 1e-8):
        super().__init__()
        self.eps = eps

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return koleo_loss(features, eps=self.eps)
