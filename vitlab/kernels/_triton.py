"""Shared plumbing for the Triton kernels: a lazy import of triton, lazy ``triton.jit``, and the
row-view and launch-size helpers every kernel file uses.

``triton.jit`` picks the compiler or the CPU interpreter by reading ``TRITON_INTERPRET`` when it
runs, so vitlab jits each kernel at its first launch, per mode, and imports triton only then:
whatever imported vitlab (or triton) first, a test can still choose the interpreter. Kernel
files bind ``tl`` for type checkers only; :class:`LazyKernel` hands each kernel to
``triton.jit`` with ``tl`` (and its helper functions, jitted in the same mode) in its globals.

Kernels must not call triton's own jitted library functions (``tl.sum``, ``tl.max``,
``tl.sigmoid``, ``tl.zeros``): triton jits those once, at its import, in the mode of that
moment, and the interpreter cannot call compiled ones. Reductions use ``tl.reduce`` with
:data:`add_combine` / :data:`max_combine`, which resolve to triton's own combine functions: the
interpreter recognises those and reduces with numpy instead of calling them, and the compiler
emits the same code as ``tl.sum`` / ``tl.max``. ``test_kernel_dispatch`` checks all of this.
"""

from __future__ import annotations

import math
import os
import types
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # bound to the real module at the first launch, see LazyKernel
    import triton.language as tl  # noqa: TC004 - kernels see it only when jitted

__all__ = [
    "LazyKernel", "add_combine", "as_bchw", "as_rows", "bchw_strides", "cdiv", "interpreter_enabled", "lazy_jit", "load_triton",
    "max_combine", "next_power_of_2", "num_warps", "program_budget", "row_tile", "split_programs", "tile_2d",
]

_triton = None  # the triton module once imported; False if it cannot be


def load_triton():
    """Import triton on first use; None when it is not installed (or fails to import)."""
    global _triton
    if _triton is None:
        try:
            import triton
            import triton.language  # binds triton.language for _imported_interpreted

            _triton = triton
        except ImportError:
            _triton = False
    return _triton or None


def interpreter_enabled() -> bool:
    """True when Triton kernels run on the CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


def _imported_interpreted(triton) -> bool:
    """Whether triton was imported for the interpreter: its own library is jitted then, in that mode."""
    from triton.runtime.jit import JITFunction

    return not isinstance(triton.language.standard.cdiv, JITFunction)


class LazyKernel:
    """A kernel function handed to ``triton.jit`` at its first launch, with the real
    ``triton.language`` bound as ``tl`` in (a copy of) its module globals."""

    def __init__(self, fn: Callable, library_twin: str | None = None):
        self.fn = fn
        self.library_twin = library_twin  # name of the same function in triton.language.standard
        self._jitted: dict[bool, object] = {}  # per mode, compiled or interpreted
        self.__name__ = fn.__name__
        self.__doc__ = fn.__doc__

    def _as_helper(self, triton):
        """What a kernel calling this helper sees: triton's own twin if it has one, else our jit."""
        twin = getattr(triton.language.standard, self.library_twin or "", None)
        return twin if twin is not None else self._jit()

    def _jit(self):
        triton = load_triton()
        if triton is None:
            raise RuntimeError(f"{self.__name__} needs triton, which is not importable here")
        mode = interpreter_enabled()
        if not mode and _imported_interpreted(triton):
            raise RuntimeError(
                "triton was imported with TRITON_INTERPRET=1, so it cannot compile kernels in this process; "
                "unset TRITON_INTERPRET before anything imports triton"
            )
        if mode not in self._jitted:
            fn = self.fn
            scope = {**fn.__globals__, "tl": triton.language}  # a copy: the module itself stays untouched
            for name in fn.__code__.co_names:  # helpers the kernel calls, in the same mode
                if isinstance(scope.get(name), LazyKernel) and scope[name] is not self:
                    scope[name] = scope[name]._as_helper(triton)
            fn = types.FunctionType(fn.__code__, scope, fn.__name__, fn.__defaults__, fn.__closure__)
            fn.__annotations__, fn.__qualname__ = self.fn.__annotations__, self.fn.__qualname__
            self._jitted[mode] = triton.jit(fn)
        return self._jitted[mode]

    def __getitem__(self, grid):
        launch = self._jit()[grid]

        def on_tensor_device(*args, **kwargs):
            # Triton launches on the current CUDA device; follow the tensors if they live elsewhere.
            dev = next((a.device for a in args if isinstance(a, torch.Tensor)), None)
            if dev is not None and dev.type == "cuda" and dev.index != torch.cuda.current_device():
                with torch.cuda.device(dev):
                    return launch(*args, **kwargs)
            return launch(*args, **kwargs)

        return on_tensor_device


def lazy_jit(fn: Callable) -> LazyKernel:
    """Decorator form of :class:`LazyKernel`; use it where ``@triton.jit`` would go."""
    return LazyKernel(fn)


def _add(a, b):
    return a + b


def _max(a, b):
    return tl.maximum(a, b)


# ``tl.reduce(x, axis, add_combine)`` is ``tl.sum(x, axis)``, and ``max_combine`` gives
# ``tl.max``; both stand for triton's own combine functions (see the module docstring).
add_combine = LazyKernel(_add, library_twin="_sum_combine")
max_combine = LazyKernel(_max, library_twin="_elementwise_max")


@lazy_jit
def row_tile(start, n_rows, col_ok, BLOCK_M: tl.constexpr):
    """Rows ``[start, start + BLOCK_M)`` of a ``[rows, cols]`` tile whose columns are in bounds where
    ``col_ok``: the row indices, their bounds mask, the tile's mask, and the rows as an int64 column
    (``r * stride`` overflows int32 on large inputs). A device function: kernels call it."""
    rows = start + tl.arange(0, BLOCK_M)
    row_ok = rows < n_rows
    return rows, row_ok, row_ok[:, None] & col_ok[None, :], rows.to(tl.int64)[:, None]


def cdiv(a: int, b: int) -> int:
    """Ceiling division, for grid sizes."""
    return -(-a // b)


def next_power_of_2(n: int) -> int:
    """Smallest power of two >= ``n`` (Triton block shapes must be powers of two)."""
    return 1 if n <= 1 else 1 << (n - 1).bit_length()


def as_rows(x: torch.Tensor, width: int) -> torch.Tensor:
    """View ``x`` as ``[M, width]`` rows with a unit stride along the row.

    Kernels take the row stride as an argument, so strided rows (e.g. the halves of a
    ``chunk(2, -1)``) are read in place; anything else is copied once here.
    """
    rows = x.reshape(-1, width)
    if width > 1 and rows.stride(-1) != 1:
        rows = rows.contiguous()
    return rows


def as_bchw(x: torch.Tensor) -> torch.Tensor:
    """View channel-first ``x`` [B, C, *spatial] as ``[B, C, H, W]`` with a unit stride along W
    (W the last spatial dim, H the others flattened; both 1 when there are none).

    Kernels take the B, C and H strides as arguments, so channel slices (a ``split`` of a conv
    output) and spatial crops (``y[..., :R, :W]``) are read in place; anything else is copied once here.
    """
    B, C = x.shape[:2]
    W = x.shape[-1] if x.ndim > 2 else 1
    grid = x.reshape(B, C, math.prod(x.shape[2:-1]), W)
    if W > 1 and grid.stride(-1) != 1:
        grid = grid.contiguous()
    return grid


def bchw_strides(x4: torch.Tensor) -> tuple[int, int, int]:
    """The B, C and H strides of an :func:`as_bchw` view (its W stride is 1), as kernels take them."""
    return x4.stride(0), x4.stride(1), x4.stride(2)


def program_budget(device: torch.device) -> int:
    """About how many programs keep the device busy: a few waves of the GPU's SMs; on the CPU
    interpreter a small number, since every program runs as a Python loop iteration."""
    if device.type == "cuda":
        return 4 * torch.cuda.get_device_properties(device).multi_processor_count
    return 8


def split_programs(n: int, block: int, programs: int) -> tuple[int, int]:
    """Share ``n`` items (rows, or a reduced axis) among at most ``programs`` programs, each looping over
    a whole number of ``block``-item tiles: ``(programs, items per program)``, no program left empty."""
    progs = max(1, min(cdiv(n, block), programs))
    per_prog = cdiv(max(1, cdiv(n, progs)), block) * block
    return max(1, cdiv(n, per_prog)), per_prog


def tile_2d(n_cols: int, *, max_cols: int = 1024, elements: int = 4096) -> tuple[int, int]:
    """``(BLOCK_M, BLOCK_N)`` for an elementwise pass over ``[M, n_cols]`` rows: a whole row
    (up to ``max_cols``) per tile and as many rows as fit in ``elements``, so narrow rows still
    give each program enough work to hide memory latency."""
    block_n = min(next_power_of_2(n_cols), max_cols)
    return max(1, elements // block_n), block_n


def num_warps(live_elements: int) -> int:
    """Warps for a program holding ``live_elements`` fp32 values at once (all live tiles summed):
    about 16 per thread keeps kernels under ~128 registers (checked with ``ptxas -v`` for sm_90),
    so enough warps stay resident to hide memory latency."""
    warps = max(1, live_elements // 512)
    return max(4, min(16, 1 << (warps.bit_length() - 1)))  # a power of two
