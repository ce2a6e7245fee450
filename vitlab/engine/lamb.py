"""LAMB (You et al. 2020, "Large Batch Optimization for Deep Learning: Training BERT in 76 Minutes"):
Adam's update rescaled, per parameter tensor, by the trust ratio ``||w|| / ||update||``, so every layer
moves by about the same fraction of its norm whatever the batch size. torch has no LAMB.

The update is the one of NVIDIA apex's ``FusedLAMB``, which DeiT III trained with (``--opt fusedlamb``)
and which timm's ``Lamb`` reproduces; per tensor, with Adam's bias-corrected moments ``m_hat``, ``v_hat``:

    u = m_hat / (sqrt(v_hat) + eps) + weight_decay * w       # weight decay inside the update
    w <- w - lr * r * u,   r = ||w|| / ||u||  (1 where either norm is 0)

As in apex (``use_nvlamb=False``), tensors whose group has no weight decay (biases, norms, tokens) take
Adam's step without the trust ratio; ``always_adapt=True`` applies it to every tensor, as the paper
writes it. apex also clips the global gradient norm to 1.0 inside its step; here the trainer does
that before every step (``train.clip_grad``), so this class does not clip.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch

__all__ = ["Lamb"]


class Lamb(torch.optim.Optimizer):
    """LAMB over parameter groups, each with its own ``lr`` and ``weight_decay`` (the trainer sets both every step).

    Args:
        params: parameters or parameter groups.
        lr: learning rate.
        betas: Adam's moment decay rates.
        eps: added to ``sqrt(v_hat)``.
        weight_decay: decay coefficient, added to the update before the trust ratio.
        always_adapt: apply the trust ratio also to tensors of groups with ``weight_decay == 0``.
    """

    def __init__(self, params: Iterable[Any], *, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-6, weight_decay: float = 0.0, always_adapt: bool = False):
        if lr < 0 or eps < 0 or weight_decay < 0:
            raise ValueError(f"lr, eps and weight_decay must be >= 0, got {lr}, {eps}, {weight_decay}")
        if not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"betas must lie in [0, 1), got {betas}")
        defaults = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay,
                    "always_adapt": always_adapt}
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if params:
                self._update(group, params)
        return loss

    def _update(self, group: dict[str, Any], params: list[torch.Tensor]) -> None:
        beta1, beta2 = group["betas"]
        grads = [p.grad for p in params]
        states = [self.state[p] for p in params]
        for p, state in zip(params, states):
            if not state:
                state["step"] = 0
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["step"] += 1
        exp_avg = [s["exp_avg"] for s in states]
        exp_avg_sq = [s["exp_avg_sq"] for s in states]
        torch._foreach_lerp_(exp_avg, grads, 1 - beta1)  # m <- beta1 m + (1 - beta1) g
        torch._foreach_mul_(exp_avg_sq, beta2)
        torch._foreach_addcmul_(exp_avg_sq, grads, grads, value=1 - beta2)  # v <- beta2 v + (1 - beta2) g^2

        denom = torch._foreach_sqrt(exp_avg_sq)
        torch._foreach_div_(denom, [math.sqrt(1 - beta2 ** s["step"]) for s in states])
        torch._foreach_add_(denom, group["eps"])
        update = torch._foreach_div(exp_avg, [1 - beta1 ** s["step"] for s in states])
        torch._foreach_div_(update, denom)

        weight_decay = group["weight_decay"]
        if weight_decay != 0:
            torch._foreach_add_(update, params, alpha=weight_decay)
        if weight_decay != 0 or group["always_adapt"]:
            w_norm = torch.stack(torch._foreach_norm(params))  # [n]: one norm per tensor
            u_norm = torch.stack(torch._foreach_norm(update))
            ratio = torch.where((w_norm > 0) & (u_norm > 0), w_norm / u_norm, torch.ones_like(w_norm))
            torch._foreach_mul_(update, list(ratio.unbind()))
        torch._foreach_add_(params, update, alpha=-group["lr"])
