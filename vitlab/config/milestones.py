"""A recipe's milestones as fractions of the run: resolved to a step when the run's length is known, so
that ``train.max_steps=N`` (in a file, on the command line, in a sweep grid) moves every one with it."""

from __future__ import annotations

import math

__all__ = ["fraction_of"]


def fraction_of(fraction: float, total_steps: int, name: str = "fraction") -> int:
    """``floor(fraction * total_steps)``: the step a milestone at ``fraction`` of a run of ``total_steps``
    falls on (a tolerance of 1e-9 keeps 0.1 * 280 at 28 whatever the float rounding).

    Raises:
        ValueError: ``fraction`` outside [0, 1], naming ``name``.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"{name}={fraction} must be a fraction of the run, in [0, 1]")
    return int(math.floor(fraction * total_steps + 1e-9))
