"""Exponential moving average of the student weights into the teacher, the "momentum encoder" of
DINO (Caron et al. 2021, "Emerging Properties in Self-Supervised Vision Transformers") and DINOv3
(Simeoni et al. 2025). The momentum schedule (cosine 0.992 -> 1.0) lives in the engine.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ema_update"]


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """In place: ``teacher <- momentum * teacher + (1 - momentum) * student`` for every parameter.

    Buffers are left alone, as in DINOv3 (a ViT has no running statistics; RoPE periods are fixed).
    The two modules must have the same parameters in the same order (the teacher is a copy of the
    student); frozen student parameters are averaged too.

    Args:
        teacher: the EMA model, updated in place.
        student: the trained model.
        momentum: weight kept by the teacher, in [0, 1]; 1 leaves it unchanged.
    """
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must be in [0, 1], got {momentum}")
    teacher_params = list(teacher.parameters())
    student_params = list(student.parameters())
    if len(teacher_params) != len(student_params):
        raise ValueError(f"teacher has {len(teacher_params)} parameters, student {len(student_params)}")
    for t, s in zip(teacher_params, student_params):
        if t.shape != s.shape:
            raise ValueError(f"parameter shape mismatch: teacher {tuple(t.shape)} vs student {tuple(s.shape)}")
    # lerp_(s, w) = t + w * (s - t) = (1 - w) * t + w * s; one fused kernel per dtype/device group.
    torch._foreach_lerp_(teacher_params, student_params, 1.0 - momentum)
