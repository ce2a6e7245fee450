"""ONNX export: ``torch.onnx.export(..., dynamo=True)`` of an :func:`export_program` program.

What converts (torch 2.14, onnxscript 0.7, checked against onnxruntime in ``tests/test_export.py``):
attention, RoPE attention and Hyena 2D blocks, with registers and padding, and both algorithms of Hyena's
long convolution: ``direct`` (a ``[T, T]`` matrix product per channel) and ``fft`` (``rfft2``/``irfft2`` as
ONNX ``DFT``). The fused Triton kernels do not (no ONNX function for a ``vitlab::*`` custom op): the program
must be exported with ``kernels="torch"``, :func:`export_program`'s default.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

__all__ = ["export_onnx", "INPUT_NAME", "OUTPUT_NAME"]

INPUT_NAME, OUTPUT_NAME = "images", "output"


def export_onnx(program: torch.export.ExportedProgram, path: str | os.PathLike) -> Path:
    """Write ``program`` as an ONNX file with input ``images`` [B, C, H, W] and output ``output``.

    Args:
        program: from :func:`export_program` (its dynamic batch stays dynamic).
        path: the ``.onnx`` file to write (its folder is created).

    Returns:
        The file's path. Needs the ``onnx`` and ``onnxscript`` packages (``pip install onnx onnxscript``).

    Raises:
        ValueError: the program holds ``vitlab::*`` kernel nodes (``export_program(kernels="keep")``).
    """
    kernels = sorted({str(n.target) for n in program.graph.nodes
                      if n.op == "call_function" and str(n.target).startswith("vitlab.")})
    if kernels:
        raise ValueError(f"the program holds Triton kernel nodes {kernels}, which ONNX cannot read; export it with "
                         "export_program(..., kernels='torch')")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx_program = torch.onnx.export(program, dynamo=True, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                     verbose=False)
    onnx_program.save(str(path))
    return path
