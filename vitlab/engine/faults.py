"""Fault injection for resume tests: ``VITLAB_FAULT=SIGKILL@4`` kills this process right after step 4.

The signal is real (``os.kill`` of the process itself), so a test exercises exactly what a
preemption (SIGTERM, handled) or an OOM kill (SIGKILL, not handled) does, at a known step.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass

__all__ = ["Faults"]


@dataclass
class Faults:
    signal_number: int | None = None
    step: int | None = None

    @classmethod
    def from_env(cls) -> "Faults":
        spec = os.environ.get("VITLAB_FAULT", "")
        if not spec:
            return cls()
        name, _, step = spec.partition("@")
        if not step.isdigit() or not hasattr(signal, name):
            raise ValueError(f"VITLAB_FAULT must look like SIGKILL@4, got {spec!r}")
        return cls(int(getattr(signal, name)), int(step))

    def maybe_fire(self, step: int) -> None:
        if self.signal_number is not None and step == self.step:
            os.kill(os.getpid(), self.signal_number)
