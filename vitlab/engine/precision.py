"""Mixed precision: bf16 autocast on CUDA, fp16 autocast with a ``GradScaler``, fp32 everywhere else.

CPU runs stay fp32: bf16 matmuls on CPUs without AMX are orders of magnitude slower.
"""

from __future__ import annotations

import contextlib

import torch

__all__ = ["Precision"]


class Precision:
    """Autocast context and gradient scaler for one device.

    Args:
        mode: ``auto`` (bf16 on CUDA, fp32 on CPU), ``bf16``, ``fp16`` or ``fp32``.
        device: the training device.
    """

    def __init__(self, mode: str, device: torch.device):
        if mode not in ("auto", "bf16", "fp16", "fp32"):
            raise ValueError(f"train.precision must be auto, bf16, fp16 or fp32, got {mode!r}")
        if mode == "auto":
            mode = "bf16" if device.type == "cuda" else "fp32"
        if mode != "fp32" and device.type != "cuda":
            raise ValueError(f"train.precision={mode!r} needs CUDA; CPU runs use fp32")
        self.mode, self.device = mode, device
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[mode]
        self.scaler = torch.amp.GradScaler("cuda") if mode == "fp16" else None

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.mode == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def unscale(self, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler is None:
            optimizer.step()
        else:
            self.scaler.step(optimizer)
            self.scaler.update()

    def state_dict(self) -> dict:
        return self.scaler.state_dict() if self.scaler is not None else {}

    def load_state_dict(self, state: dict) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)
