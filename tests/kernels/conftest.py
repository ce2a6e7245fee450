"""Kernel tests run the real Triton kernels: the ``gpu`` tests compiled on CUDA, all others on
Triton's CPU interpreter (CPU tensors), chosen per test through ``TRITON_INTERPRET``.

vitlab reads ``TRITON_INTERPRET`` at each launch, and its kernels avoid the parts of triton that
are fixed when triton is imported, so the interpreter works whichever mode triton was imported
in (the full suite imports it early, through timm). The reverse does not hold: triton imported
for the interpreter cannot compile. So without CUDA the variable is set here, before anything
imports triton (torch does not); with CUDA triton is imported now, for compiling, unless the
caller set ``TRITON_INTERPRET=1`` (then the ``gpu`` tests skip).
"""

import os

import torch

HAS_CUDA = torch.cuda.is_available()
INTERPRET_ONLY = os.environ.get("TRITON_INTERPRET") == "1" or not HAS_CUDA
if INTERPRET_ONLY:
    os.environ["TRITON_INTERPRET"] = "1"
else:
    import triton  # noqa: F401  (pins the compiled mode: interpreter tests can still run after it)

import pytest


@pytest.fixture(autouse=True)
def _triton_mode(request, monkeypatch):
    """``gpu`` tests compile for CUDA (skipped without it); all others use the interpreter on CPU."""
    if request.node.get_closest_marker("gpu"):
        if not HAS_CUDA:
            pytest.skip("needs a CUDA device")
        if INTERPRET_ONLY:
            pytest.skip("TRITON_INTERPRET=1 was set before triton was imported: it cannot compile now")
        monkeypatch.setenv("TRITON_INTERPRET", "0")
    else:
        monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.delenv("VITLAB_KERNELS", raising=False)


@pytest.fixture(autouse=True)
def _poison_empty(monkeypatch):
    """Fill every ``torch.empty`` with NaN (floats) or a sentinel (ints), so an element a kernel
    forgets to write shows up in the comparison instead of passing by luck."""
    real_empty = torch.empty

    def poisoned_empty(*args, **kwargs):
        t = real_empty(*args, **kwargs)
        if t.is_floating_point():
            t.fill_(float("nan"))
        elif t.dtype != torch.bool:
            t.fill_(-12345)
        return t

    monkeypatch.setattr(torch, "empty", poisoned_empty)
