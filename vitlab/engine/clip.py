"""Gradient clipping by one norm over every trained parameter (timm, torchtitan) or by one norm per
trainable module (DINOv3 clips its backbone, DINO head and iBOT head separately, each to
``optim.clip_grad``): ``train.clip_grad_scope`` is ``global`` or ``module``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

__all__ = ["CLIP_SCOPES", "clip_groups", "clip_gradients"]

CLIP_SCOPES = ("global", "module")


def clip_groups(modules: Mapping[str, nn.Module], params: Sequence[torch.Tensor], scope: str) -> dict[str, list[torch.Tensor]]:
    """The parameter groups clipped together: ``params`` (the optimizer's) as one group, or split by the
    task's trainable ``modules`` (a parameter the optimizer does not hold is left out)."""
    if scope not in CLIP_SCOPES:
        raise ValueError(f"train.clip_grad_scope must be one of {', '.join(CLIP_SCOPES)}, got {scope!r}")
    if scope == "global":
        return {"all": list(params)}
    trained = {id(p) for p in params}
    groups = {name: [p for p in module.parameters() if id(p) in trained] for name, module in modules.items()}
    return {name: group for name, group in groups.items() if group}


def clip_gradients(groups: Mapping[str, list[torch.Tensor]], max_norm: float | None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clips each group's gradient to ``max_norm`` (None or 0: no clipping).

    Returns:
        ``(total, norms)``: the norm of all gradients before clipping (the global norm either way) and
        each group's norm before clipping.
    """
    norms = {}
    for name, group in groups.items():
        norm = torch.nn.utils.clip_grad_norm_(group, max_norm or float("inf"))
        norms[name] = norm.full_tensor() if hasattr(norm, "full_tensor") else norm  # FSDP2: a DTensor
    if len(norms) == 1:
        return next(iter(norms.values())), norms
    return torch.stack([n.float() for n in norms.values()]).square().sum().sqrt(), norms
