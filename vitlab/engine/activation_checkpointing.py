"""``train.activation_checkpointing``: recompute blocks' activations in backward instead of keeping them.

``none`` (the default) keeps every activation; ``full`` checkpoints every block; an integer ``k``
checkpoints every k-th block (blocks ``k-1, 2k-1, ...``: torchtitan's selective per-layer rule), a
memory / compute trade between the two. Each network of the task that has
``set_activation_checkpointing`` (every :class:`~vitlab.models.HybridViT`: a DINO run's student, and
its teachers, whose no-grad forwards are never checkpointed) applies it per block with non-reentrant
``torch.utils.checkpoint``.

Order, as torchtitan composes them: checkpointing is set first, then ``train.compile`` compiles the
blocks (a checkpointed block's compiled forward runs inside its checkpoint, and again in backward)
or the whole task (dynamo traces each checkpoint as one higher-order op), then DDP or FSDP2 wraps.
The memory it saves is measured by ``tools/bench_memory.py`` and planned by ``vitlab flops --memory``.
"""

from __future__ import annotations

from typing import Any

from torch import nn

__all__ = ["resolve_activation_checkpointing", "apply_activation_checkpointing"]


def resolve_activation_checkpointing(value: Any) -> int | None:
    """``train.activation_checkpointing`` as "checkpoint every k-th block" (``None``: no block).

    Args:
        value: ``None`` or ``"none"``, ``"full"`` (every block) or a positive integer k.

    Raises:
        ValueError: any other value, naming ``train.activation_checkpointing``.
    """
    if value is None or value == "none":
        return None
    if value == "full":
        return 1
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    raise ValueError(f"train.activation_checkpointing must be 'none', 'full' or a positive integer k "
                     f"(every k-th block), got {value!r}")


def apply_activation_checkpointing(task: nn.Module, value: Any) -> int | None:
    """Set ``value`` (see :func:`resolve_activation_checkpointing`) on every network in ``task``.

    Call it before :func:`vitlab.engine.compile.apply_compile` and before wrapping for data
    parallelism. Returns k (``None``: off).
    """
    every = resolve_activation_checkpointing(value)
    networks = [m for m in task.modules() if hasattr(m, "set_activation_checkpointing")]
    if every is not None and not networks:
        raise ValueError(f"train.activation_checkpointing={value!r}: the task has no network with "
                         "set_activation_checkpointing (a HybridViT)")
    for network in networks:
        network.set_activation_checkpointing(every)
    return every
