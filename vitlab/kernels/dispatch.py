"""Backend choice for the fused kernels: Triton or the plain-torch reference.

Every public kernel takes ``backend="auto" | "triton" | "torch"``:

- ``"auto"``: Triton when every tensor is on CUDA, in fp32/bf16/fp16, and triton imports;
  the torch reference otherwise (CPU, MPS, float64, no triton).
- ``"triton"``: always Triton. On CPU this is allowed only under the Triton interpreter
  (``TRITON_INTERPRET=1``, set before triton is first imported: vitlab imports it at the first
  launch), which is how the tests check the kernels without a GPU; otherwise it raises
  ``RuntimeError``.
- ``"torch"``: always the reference (the ground truth the kernels are tested against).

Setting the environment variable ``VITLAB_KERNELS=torch`` forces the reference everywhere,
whatever ``backend`` says: a one-line switch for bisecting a numerical problem or a crash to
the kernels. ``VITLAB_KERNELS`` unset, empty or ``auto`` leaves the per-call choice alone.
"""

from __future__ import annotations

import os
from typing import Literal

import torch

from vitlab.kernels._triton import interpreter_enabled, load_triton

__all__ = ["BACKENDS", "SUPPORTED_DTYPES", "Backend", "resolve_backend", "triton_available"]

Backend = Literal["auto", "triton", "torch"]
BACKENDS = ("auto", "triton", "torch")
SUPPORTED_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
ENV_VAR = "VITLAB_KERNELS"


@torch.compiler.assume_constant_result  # traced, a constant: no guard on whether triton was imported yet
def triton_available() -> bool:
    """True when triton is importable (this imports it, fixing its compiled/interpreted mode)."""
    return load_triton() is not None


def _forced_by_env() -> bool:
    value = os.environ.get(ENV_VAR, "").strip().lower()
    if value in ("", "auto"):
        return False
    if value == "torch":
        return True
    raise ValueError(f"{ENV_VAR} must be 'torch', 'auto' or unset, got {os.environ[ENV_VAR]!r}")


def resolve_backend(backend: str, *tensors: torch.Tensor | None) -> Literal["triton", "torch"]:
    """Pick the implementation that will run for ``tensors``.

    Args:
        backend: ``"auto"``, ``"triton"`` or ``"torch"`` (see the module docstring).
        *tensors: the kernel's tensor inputs; ``None`` entries (absent optional inputs) are skipped.

    Returns:
        ``"triton"`` or ``"torch"``.

    Raises:
        ValueError: ``backend`` (or ``VITLAB_KERNELS``) is not a known value.
        RuntimeError: ``"triton"`` was forced where it cannot run (no triton; CPU tensors
            without ``TRITON_INTERPRET=1``; tensors on several devices).
        TypeError: ``"triton"`` was forced on a dtype the kernels do not implement.
    """
    if backend not in BACKENDS:
        raise ValueError(f"kernel backend must be one of {BACKENDS}, got {backend!r}")
    if _forced_by_env() or backend == "torch":
        return "torch"
    present = [t for t in tensors if t is not None]
    on_cuda = bool(present) and all(t.is_cuda for t in present)
    dtypes_ok = all(t.dtype in SUPPORTED_DTYPES for t in present if t.is_floating_point())
    if backend == "auto":
        return "triton" if on_cuda and dtypes_ok and triton_available() else "torch"

    if not triton_available():
        raise RuntimeError("backend='triton' but triton is not importable; use backend='auto' or 'torch'")
    if len({t.device for t in present}) > 1:
        devices = sorted({str(t.device) for t in present})
        raise RuntimeError(f"backend='triton' needs all tensors on one device, got {devices}")
    if not on_cuda and not interpreter_enabled():
        devices = sorted({str(t.device) for t in present}) or ["no tensors"]
        raise RuntimeError(
            f"backend='triton' got tensors on {devices}; Triton runs on CUDA, or on CPU only under its "
            "interpreter (set TRITON_INTERPRET=1 before anything imports triton)"
        )
    if not dtypes_ok:
        unsupported = [t.dtype for t in present if t.is_floating_point() and t.dtype not in SUPPORTED_DTYPES]
        bad = sorted(set(map(str, unsupported)))
        raise TypeError(f"the Triton kernels support float32, bfloat16 and float16, got {bad}; "
                        "use backend='torch'")
    return "triton"
