"""Optimizer construction: parameter groups with weight-decay exemptions and layer-wise lr decay.

Two weight-decay rules (``optim.no_weight_decay``):

- ``"timm"`` (BEiT/DINOv2/timm): biases, every 1-D parameter (norm weights, LayerScale gammas) and
  the tokens a module lists in ``no_weight_decay()`` (CLS, registers, mask token, position
  embedding) get no weight decay.
- ``"dinov3"`` (facebookresearch/dinov3 ``train/param_groups.py``): only names ending in ``bias`` or
  containing ``norm`` or ``gamma`` are exempt; CLS, register and mask tokens are decayed. vitlab's
  Hyena mixer has two parameters DINOv3's ViT lacks; they follow DINOv3's names for their analogues:
  the sine frequencies ``freq`` as DINOv3's exempt ``fourier_w``, and the skip term ``skip`` as the
  ``bias`` it is called in the Hyena reference (safari).

The lr the lr of a parameter at depth ``i`` of an ``L``-block
network is scaled by ``layer_decay ** (L + 1 - i)`` (depth from the module's ``layer_id``); the patch
embedding's lr is further scaled by ``patch_embed_lr_mult`` (DINOv3 uses 0.2).

Each group carries ``lr_scale`` and ``wd_scale``; every step the trainer sets
``lr = lr_schedule(step) * lr_scale`` and ``weight_decay = wd_schedule(step) * wd_scale``.
"""

from __future__ import annotations

from typing import Any

import math

import torch
from torch import nn

from vitlab.config import instantiate

__all__ = ["param_groups", "build_optimizer", "set_hyperparams", "lr_scale_factor"]


NO_WEIGHT_DECAY_RULES = ("timm", "dinov3")


def _no_decay(rule: str, name: str, param: nn.Parameter, exempt: set[str]) -> bool:
    if rule == "dinov3":
        leaf = name.rsplit(".", 1)[-1]
        return name.endswith("bias") or "norm" in name or "gamma" in name or leaf in ("freq", "skip")
    # 1-D parameters are biases and norm scales (and LayerScale gammas); tokens are listed by the model
    return param.ndim <= 1 or name.endswith(".bias") or name in exempt


def param_groups(modules: dict[str, nn.Module], *, layer_decay: float = 1.0, patch_embed_lr_mult: float = 1.0,
                 no_weight_decay: str = "timm") -> list[dict[str, Any]]:
    """Parameter groups of the trainable modules.

    Args:
        modules: name -> module to optimize (``task.trainable_modules()``). A module may define
            ``no_weight_decay() -> set[str]`` and ``layer_id(name) -> int`` plus ``num_blocks``
            (as ``HybridViT`` does); without them it gets full decay and no layer scaling.
        layer_decay: per-block lr multiplier (1.0 disables layer-wise decay).
        patch_embed_lr_mult: extra lr multiplier of parameters under ``patch_embed``.
        no_weight_decay: which parameters get no weight decay: ``"timm"`` or ``"dinov3"`` (see above).

    Returns:
        groups for ``torch.optim`` with keys ``params``, ``names``, ``lr_scale``, ``wd_scale``.
    """
    if no_weight_decay not in NO_WEIGHT_DECAY_RULES:
        raise ValueError(f"optim.no_weight_decay must be one of {NO_WEIGHT_DECAY_RULES}, got {no_weight_decay!r}")
    groups: dict[tuple[float, float], dict[str, Any]] = {}
    for prefix, module in modules.items():
        exempt = set(module.no_weight_decay()) if hasattr(module, "no_weight_decay") else set()
        depth = getattr(module, "num_blocks", None)
        for name, param in module.named_parameters():
            if not param.requires_grad:
                continue
            lr_scale = 1.0
            if depth is not None and hasattr(module, "layer_id") and layer_decay != 1.0:
                lr_scale = layer_decay ** (depth + 1 - module.layer_id(name))
            if name.startswith("patch_embed"):
                lr_scale *= patch_embed_lr_mult
            wd_scale = 0.0 if _no_decay(no_weight_decay, name, param, exempt) else 1.0
            group = groups.setdefault((lr_scale, wd_scale), {"params": [], "names": [], "lr_scale": lr_scale,
                                                             "wd_scale": wd_scale})
            group["params"].append(param)
            group["names"].append(f"{prefix}.{name}" if prefix else name)
    if not groups:
        raise ValueError(f"no trainable parameters in modules {list(modules)}")
    return list(groups.values())


def build_optimizer(optimizer_cfg: Any, groups: list[dict[str, Any]]) -> torch.optim.Optimizer:
    """Instantiate ``optimizer_cfg`` (e.g. ``L(torch.optim.AdamW)(betas=[0.9, 0.999])``) over ``groups``.

    lr and weight decay start at 0: the trainer sets them from the schedules before every step.
    """
    factory = instantiate(optimizer_cfg, _partial_=True)
    clean = [{k: v for k, v in g.items() if k != "names"} | {"lr": 0.0, "weight_decay": 0.0} for g in groups]
    optimizer = factory(clean)
    for group, src in zip(optimizer.param_groups, groups):
        group["names"] = src["names"]  # kept for logging/debugging; plain strings checkpoint fine
    return optimizer


def set_hyperparams(optimizer: torch.optim.Optimizer, lr: float, weight_decay: float) -> None:
    """Scheduled lr / weight decay times each group's scales."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group["lr_scale"]
        group["weight_decay"] = weight_decay * group["wd_scale"]


LR_SCALING_RULES = (None, "sqrt_wrt_1024", "linear_wrt_256")


def lr_scale_factor(rule: str | None, batch_size: int) -> float:
    """The factor a batch-size scaling rule applies to the configured lr (DINOv3 ``optim.scaling_rule``).

    Args:
        rule: ``None`` (the lr is used as written), ``"sqrt_wrt_1024"`` (DINOv3's default:
            ``4 * sqrt(B / 1024)``, so a base lr is the lr of a batch of 64) or ``"linear_wrt_256"``
            (Goyal et al. 2017: ``B / 256``).
        batch_size: the global batch of one optimizer step (``data.batch_size``).
    """
    if rule not in LR_SCALING_RULES:
        raise ValueError(f"optim.lr_scaling must be one of {LR_SCALING_RULES}, got {rule!r}")
    if rule == "sqrt_wrt_1024":
        return 4.0 * math.sqrt(batch_size / 1024.0)
    if rule == "linear_wrt_256":
        return batch_size / 256.0
    return 1.0
