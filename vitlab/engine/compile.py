"""``train.compile``: ``torch.compile`` for training, per block (as torchtitan does) or the whole task.

- ``"blocks"``: every block of every ``blocks`` ``ModuleList`` (the student's, the EMA teacher's, the
  Gram teacher's) is compiled in place with ``fullgraph=True`` (``nn.Module.compile``), the pattern
  of torchtitan's ``apply_compile``. Blocks of one type share their graph (dynamo treats module
  parameters as inputs), so a 24-block ViT compiles one graph per block type and mode. Everything
  outside the blocks (patch embedding, readout, heads, losses, EMA) stays eager.
- ``True``: the task's forward (``training_step``: network, heads and loss) is compiled as one
  function, graph breaks allowed (the DINO task's Python bookkeeping stays eager between graphs).
- ``False``: eager.
- ``None`` (the default, "auto"): ``"blocks"`` on CUDA, off on CPU (on 2 CPU cores the quickstart's step
  took 1.25 s eager, 1.33 s with compiled blocks and 1.35 s with the task compiled: docs/speed.md).

Shapes are static (``dynamic=False``): a run sees few of them (DINO's global and local crops, the
evaluation batch), each compiled once; with dynamic shapes, inductor (torch 2.14) failed on the
Hyena block's strides when the local crops recompiled the graph (``tests/e2e/test_compile_train.py``).
Python floats are constants of a static graph too: a scheduled value that a compiled forward read
as a float would recompile it at every step of its schedule. The DINO task therefore passes the
values its step reads (teacher temperature, loss weights) as 0-dim tensors (``step_values``), which
dynamo takes as graph inputs; a task of your own should do the same.

Both modes compile in place: ``nn.Module.compile`` keeps the module and its ``state_dict`` keys
(no ``_orig_mod.`` prefix), so checkpoints of compiled and eager runs load into each other. Call
:func:`apply_compile` before wrapping for data parallelism, as torchtitan orders it: blocks are
compiled, then FSDP2 shards each (compiled) block and the root; DDP wraps the compiled task.
The Triton kernels are ``torch.library`` custom ops (:mod:`vitlab.kernels`), so a compiled block
sees them as single graph nodes without a break.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["COMPILE_MODES", "resolve_compile", "compiled_blocks", "apply_compile"]

COMPILE_MODES = ("off", "blocks", "task")

# Per code object, dynamo keeps a few compiled variants (block types x train/eval x grad/no-grad x
# input shapes: DINO's global and local crops). Its default limit of 8 is met by a hybrid's three
# block types in a DINO run; past it a block silently runs eager.
_RECOMPILE_LIMIT = 64


def resolve_compile(value: Any, device: torch.device) -> str:
    """``train.compile`` as ``"off"``, ``"blocks"`` or ``"task"`` for a run on ``device``.

    Args:
        value: ``None`` or ``"auto"`` (blocks on CUDA, off elsewhere), ``False``, ``True`` or ``"blocks"``.
        device: the training device.

    Raises:
        ValueError: any other value, naming ``train.compile``.
    """
    if value is None or value == "auto":
        return "blocks" if device.type == "cuda" else "off"
    if value is False:
        return "off"
    if value is True:
        return "task"
    if value == "blocks":
        return "blocks"
    raise ValueError(f"train.compile must be true, false, 'blocks' or null (auto: blocks on CUDA, off on CPU), "
                     f"got {value!r}")


def compiled_blocks(module: nn.Module) -> list[nn.Module]:
    """Every block of every ``blocks`` ``ModuleList`` inside ``module`` (the units FSDP2 shards too)."""
    return [block for sub in module.modules() for name, child in sub.named_children()
            if name == "blocks" and isinstance(child, nn.ModuleList) for block in child]


def apply_compile(task: nn.Module, mode: str, *, fullgraph: bool = True) -> nn.Module:
    """Compile ``task`` in place for ``mode`` (see :func:`resolve_compile`); returns ``task``.

    Args:
        task: the task module, before any DDP / FSDP wrapping.
        mode: ``"off"``, ``"blocks"`` or ``"task"``.
        fullgraph: blocks only: fail on a graph break instead of running part of a block eagerly.
    """
    if mode not in COMPILE_MODES:
        raise ValueError(f"compile mode must be one of {COMPILE_MODES}, got {mode!r}")
    if mode == "off":
        return task
    dynamo_config = torch._dynamo.config
    dynamo_config.recompile_limit = max(dynamo_config.recompile_limit, _RECOMPILE_LIMIT)
    if mode == "blocks":
        blocks = compiled_blocks(task)
        if not blocks:
            raise ValueError("train.compile='blocks' found no `blocks` ModuleList in the task; use train.compile=true")
        for block in blocks:
            block.compile(fullgraph=fullgraph, dynamic=False)
    else:
        task.compile(dynamic=False)
    return task
