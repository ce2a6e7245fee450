"""Softmax centering with an EMA center (Caron et al. 2021, "Emerging Properties in Self-Supervised
Vision Transformers", DINO): the alternative to Sinkhorn-Knopp for the DINO and iBOT teachers.

Subtracting a running mean of the teacher logits keeps any one prototype from dominating, while
the low teacher temperature keeps the output from becoming uniform; the two together avoid collapse.

Axis legend: K prototypes; ``...`` any leading axes (crops, batch, masked patches).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from vitlab.compat import RenamedAttribute, renamed_kwargs
from vitlab.kernels.dispatch import Backend, resolve_kernels
from vitlab.kernels.sinkhorn import distributed_all_reduce, sinkhorn_knopp

__all__ = ["SoftmaxCenter", "CenteredTeacherLoss", "Centering"]

Centering = Literal["sinkhorn_knopp", "softmax"]


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
    def forward(self, teacher_logits: torch.Tensor, teacher_temp: float | torch.Tensor) -> torch.Tensor:
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
        count = total[-1]
        batch_center = (total[:-1] / count.clamp_min(1)).unsqueeze(0)  # [1, K]
        moved = self.center * self.momentum + batch_center.to(self.center.dtype) * (1 - self.momentum)
        # No logits on any rank (iBOT with no masked patch) leaves the center where it is; a select,
        # not an ``if``, so that a compiled step has no data-dependent branch.
        self.center.copy_(torch.where(count > 0, moved, self.center))


class CenteredTeacherLoss(nn.Module):
    """Base of the DINO and iBOT losses: a student temperature and the teacher's centering.

    Args:
        out_dim: K, the number of prototypes of the head.
        student_temp: student softmax temperature (DINOv3: 0.1).
        center_momentum: EMA momentum of the center in ``"softmax"`` centering (DINO: 0.9).
        centering: ``"sinkhorn_knopp"`` (DINOv3 default) or ``"softmax"`` (DINO's EMA center).
        sinkhorn_iterations: Sinkhorn-Knopp iterations (DINOv3: 3).
        kernels: ``"auto" | "triton" | "torch"`` for the Sinkhorn-Knopp and cross-entropy kernels
            (:mod:`vitlab.kernels.dispatch`; ``"auto"``: Triton on CUDA, torch elsewhere), the backbone's
            choice when a task builds the loss; None: :func:`vitlab.kernels.resolve_kernels`.
    """

    backend = RenamedAttribute("kernels")

    @renamed_kwargs(backend="kernels")
    def __init__(self, out_dim: int, *, student_temp: float = 0.1, center_momentum: float = 0.9,
                 centering: Centering = "sinkhorn_knopp", sinkhorn_iterations: int = 3,
                 kernels: Backend | None = None):
        super().__init__()
        if centering not in ("sinkhorn_knopp", "softmax"):
            raise ValueError(f"centering must be 'sinkhorn_knopp' or 'softmax', got {centering!r}")
        self.out_dim = out_dim
        self.student_temp = student_temp
        self.centering = centering
        self.sinkhorn_iterations = sinkhorn_iterations
        self.kernels = resolve_kernels(kernels)
        # Only the softmax teacher has state; Sinkhorn-Knopp centres each batch on its own.
        self.center = SoftmaxCenter(out_dim, momentum=center_momentum) if centering == "softmax" else None

    @torch.no_grad()
    def teacher_probs(self, teacher_logits: torch.Tensor, teacher_temp: float | torch.Tensor, *,
                      update_center: bool = True) -> torch.Tensor:
        """Centres and sharpens the teacher's logits.

        Sinkhorn-Knopp balances the prototypes over every leading position of the (global) batch.
        With ``"softmax"`` centering the current center is used first and then moved towards this
        batch (the order of DINO, and of DINOv3 once its deferred update is resolved).

        Args:
            teacher_logits: teacher head outputs ``[..., K]`` (DINO: ``[T, B, K]`` global crops;
                iBOT: ``[M, K]`` masked positions).
            teacher_temp: teacher temperature (DINOv3: 0.04 warmed up to 0.07), a float or a 0-dim tensor.
            update_center: whether to update the EMA center (softmax centering only).

        Returns:
            float32 probabilities of the same shape, summing to one over K.
        """
        if self.center is None:
            # Balanced over the global batch, as DINOv3's sinkhorn_knopp_teacher all-reduces its sums.
            all_reduce = distributed_all_reduce if dist.is_available() and dist.is_initialized() else None
            return sinkhorn_knopp(teacher_logits, teacher_temp, self.sinkhorn_iterations, all_reduce,
                                  backend=self.kernels)
        probs = self.center(teacher_logits, teacher_temp)
        if update_center:
            self.center.update(teacher_logits)
        return probs
