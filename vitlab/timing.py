"""Wall-clock timing of a call on a device: the one helper behind ``vitlab bench``, the benchmark tools in
``tools/`` and the matmul yardstick of :mod:`vitlab.engine.mfu`.

CUDA runs kernels asynchronously, so a timer read right after a launch measures the launch only: the
device is synchronised before the clock starts (nothing queued earlier is counted) and before it stops
(everything the call queued is).
"""

from __future__ import annotations

import time
from typing import Callable

import torch

__all__ = ["synchronize", "time_call"]


def synchronize(device: torch.device) -> None:
    """Wait for the kernels queued on ``device`` (a no-op off CUDA)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds ``fn()`` takes on ``device``, its queued kernels included."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start
