"""Fault injection for resume tests: ``VITLAB_FAULT=SIGKILL@4`` kills this process right after step 4.

The signal is real (``os.kill`` of the process itself), so a test exercises exactly what a
preemption (SIGTERM, handled) or an OOM kill (SIGKILL, not handled) does, at a known step.
``VITLAB_FAULT=WAIT@4`` instead holds the run after step 4 until a stop is requested, so a test can
have a scheduler deliver the signal (``scontrol requeue``, ``scancel --signal``) at a known step.
``VITLAB_FAULT=SIGKILL@8:save`` sends the signal inside the checkpoint save of step 8 instead: after
every rank has written its data, before the rename that makes the checkpoint complete (a kill while
saving, the case atomic checkpoints exist for).
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
    in_save: bool = False  # fire inside the step's checkpoint save, before its commit

    @classmethod
    def from_env(cls) -> "Faults":
        spec = os.environ.get("VITLAB_FAULT", "")
        if not spec:
            return cls()
        name, _, where = spec.partition("@")
        step, _, place = where.partition(":")
        valid = hasattr(signal, name) or (name == "WAIT" and not place)  # WAIT needs the loop: not inside a save
        if not step.isdigit() or not valid or place not in ("", "save"):
            raise ValueError(f"VITLAB_FAULT must look like SIGKILL@4, WAIT@4 or SIGKILL@4:save, got {spec!r}")
        return cls(0 if name == "WAIT" else int(getattr(signal, name)), int(step), in_save=place == "save")

    def maybe_fire(self, step: int, stopping: Callable[[], bool] = lambda: False) -> None:
        """After step ``step``: send the signal, or hold until ``stopping()``."""
        if self.signal_number is None or step != self.step or self.in_save:
            return
        if self.signal_number:
            os.kill(os.getpid(), self.signal_number)
            return
        print(f"[vitlab] fault: holding after step {step} until a stop is requested", flush=True)
        deadline = time.monotonic() + WAIT_LIMIT_S
        while not stopping() and time.monotonic() < deadline:
            time.sleep(0.05)

    def maybe_fire_in_save(self, step: int) -> None:
        """Inside the save of step ``step``, between writing the data and committing it."""
        if self.in_save and step == self.step and self.signal_number:
            print(f"[vitlab] fault: signal {self.signal_number} inside the checkpoint save of step {step}", flush=True)
            os.kill(os.getpid(), self.signal_number)
