"""Backend choice for the fused kernels: Triton or the plain-torch reference.

A network chooses once: every module with a fused kernel takes ``kernels="auto" | "triton" | "torch"``
in its constructor, injected from the top like ``dim`` (``HybridViT(kernels=...)`` reaches every block,
norm and mixer; a task passes its backbone's choice to its losses), and hands it to each kernel call as
``backend``. Left unset (None), ``kernels`` takes its default from :func:`resolve_kernels`, the one place
that reads the environment variable ``VITLAB_KERNELS`` (``torch`` builds a network on the references: a
one-line switch for bisecting a numerical problem or a crash to the kernels; unset or empty: ``auto``).

Every public kernel takes ``backend="auto" | "triton" | "torch"``:

- ``"auto"``: Triton when every tensor is on CUDA, in fp32/bf16/fp16, and triton imports;
  the torch reference otherwise (CPU, MPS, float64, no triton).
- ``"triton"``: always Triton. On CPU this is allowed only under the Triton interpreter
  (``TRITON_INTERPRET=1``, set before triton is first imported: vitlab imports it at the first
  launch), which is how the tests check the kernels without a GPU; otherwise it raises
  ``RuntimeError``.
- ``"torch"``: always the reference (the ground truth the kernels are tested against).

:func:`torch_references` runs every kernel's reference for the duration of a ``with`` block, whatever
the modules chose: how an export writes a portable graph of a network built on the kernels.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator, Literal

import torch

from vitlab.kernels._triton import interpreter_enabled, load_triton

__all__ = ["BACKENDS", "SUPPORTED_DTYPES", "Backend", "resolve_backend", "resolve_kernels", "torch_references",
           "torch_references_active", "triton_available"]

Backend = Literal["auto", "triton", "torch"]
BACKENDS = ("auto", "triton", "torch")
SUPPORTED_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
ENV_VAR = "VITLAB_KERNELS"


@torch.compiler.assume_constant_result  # traced, a constant: no guard on whether triton was imported yet
def triton_available() -> bool:
    """True when triton is importable (this imports it, fixing its compiled/interpreted mode)."""
    return load_triton() is not None


def resolve_kernels(kernels: str | None = None) -> Backend:
    """A module's ``kernels`` setting: ``kernels`` itself, or when it is None the default, ``VITLAB_KERNELS``
    (``auto`` when unset or empty). Modules call it once, in their constructor.

    Raises:
        ValueError: ``kernels`` (or ``VITLAB_KERNELS``) is not one of ``auto``, ``triton``, ``torch``.
    """
    if kernels is None:
        value = os.environ.get(ENV_VAR, "").strip().lower() or "auto"
        if value not in BACKENDS:
            raise ValueError(f"{ENV_VAR} must be one of {BACKENDS} or unset, got {os.environ[ENV_VAR]!r}")
        return value  # type: ignore[return-value]
    if kernels not in BACKENDS:
        raise ValueError(f"kernels must be 'auto', 'triton' or 'torch', got {kernels!r}")
    return kernels  # type: ignore[return-value]


_references = [0]  # depth of nested torch_references() blocks


@contextmanager
def torch_references() -> Iterator[None]:
    """Within the block every kernel runs its plain-torch reference (and Mamba its torch scan), whatever
    ``backend`` a module passes; the network is not touched. :func:`vitlab.export.export_program` traces
    under it, so the program holds aten operators only."""
    _references[0] += 1
    try:
        yield
    finally:
        _references[0] -= 1


def torch_references_active() -> bool:
    """Whether a :func:`torch_references` block is running."""
    return _references[0] > 0


def resolve_backend(backend: str, *tensors: torch.Tensor | None) -> Literal["triton", "torch"]:
    """Pick the implementation that will run for ``tensors``.

    Args:
        backend: ``"auto"``, ``"triton"`` or ``"torch"`` (see the module docstring).
        *tensors: the kernel's tensor inputs; ``None`` entries (absent optional inputs) are skipped.

    Returns:
        ``"triton"`` or ``"torch"``.

    Raises:
        ValueError: ``backend`` is not a known value.
        RuntimeError: ``"triton"`` was forced where it cannot run (no triton; CPU tensors
            without ``TRITON_INTERPRET=1``; tensors on several devices).
        TypeError: ``"triton"`` was forced on a dtype the kernels do not implement.
    """
    if backend not in BACKENDS:
        raise ValueError(f"kernel backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "torch" or torch_references_active():
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
