"""Wall-clock timing of a call on a device: the one helper behind ``vitlab bench``, the benchmark tools in
``tools/`` and the matmul yardstick of :mod:`vitlab.engine.mfu`.

CUDA runs kernels asynchronously, so a timer read right after a launch measures the launch only: the
device is synchronised before the clock starts (nothing queued earlier is counted) and before it stops
(everything the call queued is).
"""

from __future__ import annotations

import statistics
import time
from typing import Callable, TypeVar

import torch

__all__ = ["interleaved_medians", "synchronize", "time_call"]

T = TypeVar("T")


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


def interleaved_medians(calls: dict[str, Callable[[], T]], repeats: int,
                        device: torch.device) -> tuple[dict[str, float], dict[str, T]]:
    """Median seconds of each call over ``repeats`` rounds run interleaved (a, b, a, b, ...), so that a change
    in the machine's speed during the run falls on every call alike; and each call's last result."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    results: dict[str, T] = {}
    for _ in range(repeats):
        for name, fn in calls.items():
            times[name].append(time_call(lambda: results.__setitem__(name, fn()), device))  # noqa: B023 (called at once)
    return {name: statistics.median(ts) for name, ts in times.items()}, results
