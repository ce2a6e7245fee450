"""Guard against NaN/Inf losses and gradients: skip the step, count, stop after too many in a row."""

from __future__ import annotations

__all__ = ["NonFiniteGuard", "NonFiniteError"]


class NonFiniteError(RuntimeError):
    """Too many consecutive steps had a non-finite loss or gradient."""


class NonFiniteGuard:
    """Decides whether a step may update weights.

    Args:
        max_consecutive: stop the run after this many consecutive skipped steps.
    """

    def __init__(self, max_consecutive: int = 5):
        if max_consecutive < 1:
            raise ValueError(f"max_consecutive must be >= 1, got {max_consecutive}")
        self.max_consecutive = max_consecutive
        self.consecutive = 0
        self.total_skipped = 0

    def check(self, step: int, loss_finite: bool, grads_finite: bool) -> bool:
        """True when the step is clean; False (and a count) when it must be skipped.

        Raises:
            NonFiniteError: on the ``max_consecutive``-th bad step in a row.
        """
        if loss_finite and grads_finite:
            self.consecutive = 0
            return True
        self.consecutive += 1
        self.total_skipped += 1
        what = "loss" if not loss_finite else "gradient norm"
        print(f"[vitlab] step {step}: non-finite {what}; skipping the optimizer and EMA update "
              f"({self.consecutive} in a row, limit {self.max_consecutive})", flush=True)
        if self.consecutive >= self.max_consecutive:
            raise NonFiniteError(
                f"stopping at step {step}: {self.consecutive} consecutive steps with a non-finite loss or "
                f"gradient (train.max_nonfinite_steps={self.max_consecutive}); lower the lr, check the data, "
                "or resume from the last checkpoint (it holds only finite values)"
            )
        return False
