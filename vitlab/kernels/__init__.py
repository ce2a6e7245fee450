"""Fused Triton kernels for vitlab's memory-bound hot paths, forward and backward, each with a
plain-torch reference it is tested against.

| file | function | fuses |
|---|---|---|
| ``rope.py`` | :func:`rope_2d` | RoPE on q and k, prefix/suffix tokens untouched |
| ``norm.py`` | :func:`layer_norm`, :func:`rms_norm` | residual add + norm |
| ``residual.py`` | :func:`residual_scale_drop` | ``x + drop_path(gamma * y)`` |
| ``glu.py`` | :func:`swiglu` | ``silu(a) * b`` |
| ``hyena.py`` | :func:`hyena_gate` | ``(y + v * skip) * gate`` after Hyena's FFT conv, ``y`` read in place |
| ``hyena_input.py`` | :func:`hyena_input_gate` | ``v * gate`` before it, also as the zero-padded float32 FFT input |
| ``sinkhorn.py`` | :func:`sinkhorn_knopp` | DINO/iBOT teacher centering, log domain |
| ``cross_entropy.py`` | :func:`softmax_cross_entropy` | DINO/iBOT loss, online logsumexp over K |

Every function takes ``backend="auto" | "triton" | "torch"``: ``auto`` runs Triton on CUDA and
the reference elsewhere. Modules pass their ``kernels`` constructor argument, whose default
:func:`resolve_kernels` reads from ``VITLAB_KERNELS`` (see :mod:`vitlab.kernels.dispatch`).
Importing this package does not need triton.
"""

from vitlab.kernels.cross_entropy import softmax_cross_entropy
from vitlab.kernels.dispatch import resolve_backend, resolve_kernels, torch_references, triton_available
from vitlab.kernels.glu import swiglu
from vitlab.kernels.hyena import hyena_gate
from vitlab.kernels.hyena_input import hyena_input_gate
from vitlab.kernels.norm import layer_norm, rms_norm
from vitlab.kernels.residual import residual_scale_drop
from vitlab.kernels.rope import rope_2d
from vitlab.kernels.sinkhorn import distributed_all_reduce, sinkhorn_knopp

__all__ = [
    "distributed_all_reduce",
    "hyena_gate",
    "hyena_input_gate",
    "layer_norm",
    "residual_scale_drop",
    "resolve_backend",
    "resolve_kernels",
    "rms_norm",
    "rope_2d",
    "sinkhorn_knopp",
    "softmax_cross_entropy",
    "swiglu",
    "torch_references",
    "triton_available",
]
