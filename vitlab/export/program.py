"""``torch.export`` of a network: one graph of aten operators with a dynamic batch dimension.

Two settings of the network decide what the graph holds, so the export fixes them for its duration:

- ``kernels``: with the fused Triton kernels (a network built with ``kernels="auto"`` on CUDA, or
  ``"triton"``) every kernel is a ``torch.library`` custom op with a fake implementation, so the network
  exports, each kernel as one ``vitlab::*`` node. Such a program re-runs in PyTorch where vitlab is imported
  (the ops must be registered) and Triton runs, but ONNX, TensorRT or another device cannot read those nodes.
  The default, ``kernels="torch"``, traces under :func:`vitlab.kernels.torch_references` and exports the torch
  references instead: plain aten operators that any backend reads, and that a compiler (AOTInductor,
  TensorRT) fuses itself; the network keeps its own choice. ``kernels="keep"`` exports the network's choice.
- ``long_conv`` of the Hyena 2D mixers: ``auto`` picks the long convolution's algorithm by batch size, which
  a program cannot do at run time; the export takes the algorithm ``auto`` picks for the example's batch
  and runs it at every batch size (both algorithms compute the same function). ``"direct"`` or ``"fft"``
  chooses one.

Evaluation mode, no autograd: dropout and drop path are off and no activation is checkpointed.
"""

from __future__ import annotations

import contextlib
from contextlib import contextmanager
from typing import Iterable, Iterator, Literal

import torch
from torch import nn

from vitlab.kernels import torch_references
from vitlab.mixers import Hyena2D

__all__ = ["export_program", "export_settings"]


@contextmanager
def export_settings(model: nn.Module, *, kernels: Literal["torch", "keep"] = "torch",
                    long_conv: Literal["direct", "fft"] | None = None,
                    example: torch.Tensor | None = None) -> Iterator[nn.Module]:
    """``model`` in eval mode with the kernels' references (or not) and the Hyena algorithm set, restored on exit.

    Args:
        model: the network.
        kernels: ``"torch"`` (every kernel's reference, :func:`vitlab.kernels.torch_references`) or ``"keep"``.
        long_conv: the algorithm of every Hyena 2D mixer; None: each ``auto`` mixer takes the algorithm it
            picks on ``example`` (one eager forward finds it), others keep theirs.
        example: the images [B, C, H, W] the export traces.
    """
    if kernels not in ("torch", "keep"):
        raise ValueError(f"kernels must be 'torch' or 'keep', got {kernels!r}")
    if long_conv not in (None, "direct", "fft"):
        raise ValueError(f"long_conv must be None, 'direct' or 'fft', got {long_conv!r}")
    mixers = {m: m.long_conv for m in model.modules() if isinstance(m, Hyena2D)}
    training = model.training
    with torch_references() if kernels == "torch" else contextlib.nullcontext():
        try:
            model.eval()
            paths = {m: long_conv for m in mixers} if long_conv else _auto_paths(model, mixers, example)
            for m, path in paths.items():
                m.long_conv = path
            yield model
        finally:
            model.train(training)
            for m, algorithm in mixers.items():
                m.long_conv = algorithm


def _auto_paths(model: nn.Module, mixers: Iterable[Hyena2D],
                example: torch.Tensor | None) -> dict[Hyena2D, str]:
    """The algorithm each ``auto`` mixer picks for its input on ``example``: a branch on the batch size,
    which a program with a dynamic batch cannot hold (torch.export refuses the guard on the batch)."""
    auto = [m for m in mixers if m.long_conv == "auto"]
    if not auto or example is None:
        return {}
    paths: dict[Hyena2D, str] = {}

    def record(mixer: Hyena2D, args: tuple) -> None:
        B, T, _ = args[0].shape
        paths.setdefault(mixer, mixer.path(T, B))

    hooks = [m.register_forward_pre_hook(record) for m in auto]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for hook in hooks:
            hook.remove()
    return paths


def export_program(model: nn.Module, example: torch.Tensor, *, dynamic_batch: bool = True,
                   kernels: Literal["torch", "keep"] = "torch",
                   long_conv: Literal["direct", "fft"] | None = None) -> torch.export.ExportedProgram:
    """``torch.export.export`` of ``model`` on images like ``example``, for inference.

    Args:
        model: a network taking images [B, C, H, W] (left unchanged).
        example: an example batch [B, C, H, W]; H and W are fixed in the program.
        dynamic_batch: make B a dynamic dimension (any B >= 1). An example of one image is traced as two
            (torch.export specializes a dimension whose example is 1).
        kernels: ``"torch"`` (portable aten graph, default) or ``"keep"`` (``vitlab::*`` custom-op nodes where
            the network runs its Triton kernels); see the module docstring.
        long_conv: the Hyena 2D long convolution's algorithm, or None for the one ``auto`` picks at the
            example's batch size.

    Returns:
        The ``ExportedProgram``; ``program.module()(images)`` runs it.
    """
    if example.ndim != 4:
        raise ValueError(f"example must be images [B, C, H, W], got shape {tuple(example.shape)}")
    traced, dynamic_shapes = example, None
    if dynamic_batch:
        if example.shape[0] == 1:
            traced = example.expand(2, -1, -1, -1).contiguous()
        dynamic_shapes = ({0: torch.export.Dim("batch", min=1)},)
    with export_settings(model, kernels=kernels, long_conv=long_conv, example=example), torch.no_grad():
        return torch.export.export(model, (traced,), dynamic_shapes=dynamic_shapes)
