"""Fault injection for resume tests: ``VITLAB_FAULT=SIGKILL@4`` kills this process right after step 4.

The signal is real (``os.kill`` of the process itself), so a test exercises exactly what a
preemption (SIGTERM, handled) or an OOM kill (SIGKILL, not handled) does, at a known step.
``VITLAB_FAULT=WAIT@4`` instead holds the run after step 4 until a stop is requested, so a test can
have a scheduler deliver the signal (``scontrol requeue``, ``scancel --signal``) at a known step.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from typing import Callable

__all__ = ["Faults"]

WAIT_LIMIT_S = 600.0  # a held run that no signal reaches carries on after this long


@dataclass
class Faults:
    signal_number: int | None = None  # 0: WAIT
    step: int | None = None

    @classmethod
    def from_env(cls) -> "Faults":
        spec = os.environ.get("VITLAB_FAULT", "")
        if not spec:
            return cls()
        name, _, step = spec.partition("@")
        if not step.isdigit() or not (hasattr(signal, name) or name == "WAIT"):
            raise ValueError(f"VITLAB_FAULT must look like SIGKILL@4 or WAIT@4, got {spec!r}")
        return cls(0 if name == "WAIT" else int(getattr(signal, name)), int(step))

    def maybe_fire(self, step: int, stopping: Callable[[], bool] = lambda: False) -> None:
        if self.signal_number is None or step != self.step:
            return
        if self.signal_number:
            os.kill(os.getpid(), self.signal_number)
            return
        print(f"[vitlab] fault: holding after step {step} until a stop is requested", flush=True)
        deadline = time.monotonic() + WAIT_LIMIT_S
        while not stopping() and time.monotonic() < deadline:
            time.sleep(0.05)
