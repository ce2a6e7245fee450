"""Per-step schedules for every scalar hyperparameter (lr, weight decay, EMA momentum, temperatures).

One mechanism for all of them: an optional frozen start at 0, an optional linear warmup from
``warmup_start`` to ``base``, then a ``cosine``, ``linear`` or ``constant`` ramp from ``base`` to
``final`` over the remaining steps (DINOv2/DINOv3 ``CosineScheduler`` semantics, ``freeze_iters``
included, evaluated lazily instead of as a precomputed array).

    lr = L(Schedule)(base=1e-3, final=1e-6, warmup_steps=500)   # total_steps filled in by the trainer
    lr = L(Schedule)(base=1e-3, final=1e-6, warmup_fraction=0.1)  # or a tenth of whatever the run's length
    lr(step)  # -> float
"""

from __future__ import annotations

import math
from typing import Any, Literal

from vitlab.config import instantiate, is_lazy
from vitlab.config.milestones import fraction_of

__all__ = ["Schedule", "as_schedule"]


class Schedule:
    """A scalar as a function of the optimizer step.

    Args:
        base: value at the end of warmup (the peak for lr).
        final: value at ``total_steps`` (defaults to ``base``, i.e. constant after warmup).
        warmup_steps: steps of linear warmup from ``warmup_start`` to ``base``.
        warmup_fraction: the warmup as a fraction of ``total_steps`` instead (``floor(fraction *
            total_steps)`` steps), so that a recipe's warmup follows ``train.max_steps``; not with
            ``warmup_steps``.
        warmup_start: value at the start of the warmup.
        freeze_steps: steps at exactly 0 before the warmup starts (DINOv3's ``freeze_iters``): a loss
            weight of 0 gives its parameters no gradient, where any small weight still moves them a
            full step under Adam.
        freeze_fraction: the freeze as a fraction of ``total_steps`` instead; not with ``freeze_steps``.
        kind: ``cosine`` | ``linear`` | ``constant`` shape of the decay after warmup.
        total_steps: length of the run; steps past it keep ``final``.
    """

    KINDS = ("cosine", "linear", "constant")

    def __init__(self, *, base: float, final: float | None = None, warmup_steps: int = 0,
                 warmup_fraction: float | None = None, warmup_start: float = 0.0, freeze_steps: int = 0,
                 freeze_fraction: float | None = None,
                 kind: Literal["cosine", "linear", "constant"] = "cosine", total_steps: int | None = None):
        if kind not in self.KINDS:
            raise ValueError(f"schedule kind must be one of {self.KINDS}, got {kind!r}")
        if freeze_fraction is not None:
            if freeze_steps:
                raise ValueError(f"freeze_steps={freeze_steps} and freeze_fraction={freeze_fraction}: set one of them")
            if total_steps is None:
                raise ValueError(f"freeze_fraction={freeze_fraction} needs total_steps (the trainer fills it in)")
            freeze_steps = fraction_of(freeze_fraction, total_steps, "freeze_fraction")
        if freeze_steps < 0:
            raise ValueError(f"freeze_steps must be >= 0, got {freeze_steps}")
        if warmup_fraction is not None:
            if warmup_steps:
                raise ValueError(f"warmup_steps={warmup_steps} and warmup_fraction={warmup_fraction}: set one of them "
                                 "(to give steps where a recipe gives a fraction, also set its warmup_fraction=null)")
            if total_steps is None:
                raise ValueError(f"warmup_fraction={warmup_fraction} needs total_steps (the trainer fills it in)")
            warmup_steps = fraction_of(warmup_fraction, total_steps, "warmup_fraction")
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
        if total_steps is not None and total_steps < freeze_steps + warmup_steps:
            raise ValueError(f"total_steps={total_steps} is shorter than freeze_steps={freeze_steps} + "
                             f"warmup_steps={warmup_steps}")
        self.base, self.final = float(base), float(base if final is None else final)
        self.warmup_steps, self.warmup_start = int(warmup_steps), float(warmup_start)
        self.freeze_steps, self.kind, self.total_steps = int(freeze_steps), kind, total_steps

    def __call__(self, step: int) -> float:
        if step < self.freeze_steps:
            return 0.0
        step -= self.freeze_steps
        if step < self.warmup_steps:
            return self.warmup_start + (self.base - self.warmup_start) * step / self.warmup_steps
        if self.kind == "constant" or self.total_steps is None:
            return self.base
        span = self.total_steps - self.freeze_steps - self.warmup_steps
        t = min(1.0, (step - self.warmup_steps) / span) if span > 0 else 1.0
        if self.kind == "linear":
            return self.base + (self.final - self.base) * t
        return self.final + 0.5 * (self.base - self.final) * (1.0 + math.cos(math.pi * t))

    def __repr__(self) -> str:
        return (f"Schedule(base={self.base}, final={self.final}, warmup_steps={self.warmup_steps}, "
                f"warmup_start={self.warmup_start}, freeze_steps={self.freeze_steps}, kind={self.kind!r}, total_steps={self.total_steps})")


def as_schedule(spec: Any, total_steps: int) -> Schedule:
    """A ``Schedule`` from a number (constant), a ``L(Schedule)`` config or a ``Schedule``.

    A config without ``total_steps`` gets the run's length, so configs need not repeat ``max_steps``.
    """
    if isinstance(spec, Schedule):
        return spec
    if isinstance(spec, (int, float)):
        return Schedule(base=float(spec), kind="constant", total_steps=total_steps)
    if is_lazy(spec):
        missing = spec.get("total_steps") is None
        return instantiate(spec, **({"total_steps": total_steps} if missing else {}))
    raise TypeError(f"expected a number, a Schedule or a L(Schedule) config, got {spec!r}")
