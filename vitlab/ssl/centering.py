"""Softmax centering with an EMA center (Caron et al. 2021, "Emerging Properties in Self-Supervised
Vision Transformers", DINO): the alternative to Sinkhorn-Knopp for the DINO and iBOT teachers.

Subtracting a running mean of the teacher logits keeps any one prototype from dominating, while
the low teacher temperature keeps the output from becoming uniform; the two together avoid collapse.

Axis legend: K prototypes; ``...`` any leading axes (crops, batch, masked patches).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

__all__ = ["SoftmaxCenter"]


class SoftmaxCenter(nn.Module):
    """Teacher probabilities ``softmax((logits - center) / temp)`` with an EMA ``center``.

    The center starts at zero (DINOv3 ``init_weights``) and follows
    ``center <- momentum * center + (1 - momentum) * mean(logits)``, the mean taken over every
    leading axis and, when ``torch.distributed`` is initialised, over all ranks.

    Args:
        num_prototypes: K, the teacher head's output width.
        momentum: EMA momentum of the center (DINO: 0.9).
    """

    def __init__(self, num_prototypes: int, *, momentum: float = 0.9, device=None, dtype=None):
        super().__init__()
        self.momentum = momentum
        self.register_buffer("center", torch.zeros(1, num_prototypes, device=device, dtype=dtype))

    @torch.no_grad()
    def forward(self, teacher_logits: torch.Tensor, teacher_temp: float) -> torch.Tensor:
        """Args: teacher_logits ``[..., K]``. Returns float32 probabilities ``[..., K]``."""
        return F.softmax((teacher_logits.float() - self.center) / teacher_temp, dim=-1)

    @torch.no_grad()
    def update(self, teacher_logits: torch.Tensor) -> None:
        """Moves the center towards the mean of ``teacher_logits`` ``[..., K]``."""
        flat = teacher_logits.reshape(-1, teacher_logits.shape[-1]).float()  # [M, K]
        total = torch.cat([flat.sum(dim=0), flat.new_tensor([flat.shape[0]])])  # [K + 1]
        if dist.is_available() and dist.is_initialized():
            # Sum and count travel together, so ranks with unequal sample counts average correctly.
            dist.all_reduce(total)
        if total[-1] == 0:
            return
        batch_center = (total[:-1] / total[-1]).unsqueeze(0)  # [1, K]
        self.center.mul_(self.momentum).add_(batch_center.to(self.center.dtype), alpha=1 - self.momentum)
