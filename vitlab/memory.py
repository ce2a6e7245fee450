"""Memory of a training step: what autograd saves for backward, measured, and the plan before a run.

Activation memory is measured, not modelled: :class:`SavedTensors` counts the distinct storages that
autograd's pack hook (``torch.autograd.graph.saved_tensors_hooks``) sees while a forward runs,
parameters and buffers left out (they have memory of their own). A view saved for backward keeps its
whole storage, so a storage counts whole and once. Activation checkpointing shows as it is: a
checkpointed block keeps only its inputs (non-reentrant ``torch.utils.checkpoint`` saves them through
the same hook) and recomputes the rest in backward, one block at a time.

:func:`plan_memory` (``vitlab flops CONFIG --memory``) runs the same count on a real training step of
the configured task with fake tensors (``FakeTensorMode``: shapes, dtypes and storages, no data), so a
7B config plans in seconds without allocating it, and adds the parameters, gradients, optimizer state
and the task's frozen copies (EMA teacher, Gram teacher), sharded by FSDP or replicated by DDP.
Activations are counted with the CPU kernels' saved tensors (CUDA's fused attention saves the same
``q, k, v``, output and log-sum-exp) and, for bf16 / fp16, CPU autocast's casts.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode, is_fake

from vitlab.config import instantiate
from vitlab.engine.activation_checkpointing import apply_activation_checkpointing
from vitlab.engine.compile import compiled_blocks
from vitlab.engine.optim import build_optimizer, param_groups

__all__ = ["SavedTensors", "MemoryPlan", "plan_memory", "format_plan", "OPTIMIZER_STATES"]

GiB = 2**30
# tensors of optimizer state per parameter (the step counters are scalars)
OPTIMIZER_STATES = {"AdamW": 2, "Adam": 2, "Lamb": 2, "SGD": 1}  # SGD: its momentum buffer (none without momentum)


def _storage_key(t: torch.Tensor) -> int:
    return t.untyped_storage()._cdata  # the StorageImpl: one key for every view of it, real or fake


class SavedTensors:
    """Bytes of the distinct storages autograd saves for backward while the context is active.

    Args:
        exclude: tensors whose storages are not counted (a module's parameters and buffers).

    ``parts`` splits the count by the label :meth:`part` sets (``"other"`` outside any); a storage
    counts once, in the part that saved it first. ``calls`` lists ``(label, bytes)`` per :meth:`part`
    entry, so repeated calls of one block (DINO's global and local crops) stay apart.
    """

    def __init__(self, exclude: Iterable[torch.Tensor] = ()):
        self.seen = {_storage_key(t) for t in exclude}
        self.parts: dict[str, int] = {}
        self.calls: list[tuple[str, int]] = []
        self.label = "other"
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)

    @property
    def total(self) -> int:
        return sum(self.parts.values())

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        key = _storage_key(t)
        if key not in self.seen:
            self.seen.add(key)
            nbytes = t.untyped_storage().nbytes()
            self.parts[self.label] = self.parts.get(self.label, 0) + nbytes
            if self.calls and self.calls[-1][0] == self.label:
                self.calls[-1] = (self.label, self.calls[-1][1] + nbytes)
        return t

    @contextlib.contextmanager
    def part(self, label: str):
        outer, self.label = self.label, label
        self.calls.append((label, 0))
        try:
            yield self
        finally:
            self.label = outer

    def __enter__(self) -> SavedTensors:
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)

    def per_block(self, model: nn.Module) -> contextlib.AbstractContextManager:
        """Label what each of ``model.blocks`` saves as ``block <i>`` (forward pre / post hooks)."""
        stack, open_parts = contextlib.ExitStack(), {}
        for i, block in enumerate(model.blocks):
            def enter(module, args, i=i):
                open_parts[module] = self.part(f"block {i}")
                open_parts[module].__enter__()

            def leave(module, args, out):
                open_parts.pop(module).__exit__(None, None, None)

            stack.callback(block.register_forward_pre_hook(enter).remove)
            stack.callback(block.register_forward_hook(leave).remove)
        return stack


@dataclass
class MemoryPlan:
    """Bytes per device of one training step (see :func:`plan_memory`)."""

    config: str
    batch_size: int  # global, as data.batch_size
    micro_batch: int  # per device and micro-batch
    world_size: int
    strategy: str
    precision: str
    checkpointing: Any
    optimizer: str
    parts: dict[str, int] = field(default_factory=dict)  # name -> bytes per device
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.parts.values())


def example_batch(cfg: Any, batch_size: int, mode: FakeTensorMode | None = None) -> Any:
    """A batch of ``batch_size`` from the config's transform and collate, on a blank image of the
    model's size (crops, masks and their count come out as training makes them; no dataset is read).
    With a fake ``mode`` the collate stacks the copies as fake tensors, without their memory."""
    h, w = (cfg.model.image_size,) * 2 if isinstance(cfg.model.image_size, int) else cfg.model.image_size
    channels = cfg.model.get("in_channels", 3)
    image = Image.fromarray(np.zeros((h, w, 3) if channels == 3 else (h, w), np.uint8))
    transform = instantiate(cfg.data.train_transform) if cfg.data.get("train_transform") is not None else None
    sample = transform(image) if transform is not None else torch.zeros(channels, h, w)
    collate = instantiate(cfg.data.collate) if cfg.data.get("collate") is not None else torch.utils.data.default_collate
    if mode is not None:  # a fake sample: the collate's stacking makes fake tensors, its masks stay real
        sample = torch.utils._pytree.tree_map(lambda t: mode.from_tensor(t) if isinstance(t, torch.Tensor) else t,
                                              sample)
    return collate([(sample, 0)] * batch_size)


def _bytes(tensors: Iterable[torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def plan_memory(cfg: Any, *, batch_size: int | None = None, precision: str = "fp32", world_size: int = 1,
                strategy: str = "ddp", config_name: str = "") -> MemoryPlan:
    """Plan the memory per device of a training step of ``cfg`` (keys ``model``, ``task``, ``data``,
    ``optim``, ``train``) without allocating it.

    Args:
        cfg: a run config (``train.activation_checkpointing`` and ``train.grad_accum_steps`` are read).
        batch_size: the global batch (``data.batch_size`` when None), split over ``world_size`` ranks
            and ``train.grad_accum_steps`` micro-batches.
        precision: ``fp32``, ``bf16`` or ``fp16`` (autocast, as the trainer runs them).
        world_size: ranks.
        strategy: ``ddp`` (replicated state) or ``fsdp`` (sharded state, one block gathered at a time
            and the next prefetched).
    """
    if precision not in ("fp32", "bf16", "fp16"):
        raise ValueError(f"--precision must be fp32, bf16 or fp16, got {precision!r}")
    if strategy not in ("ddp", "fsdp"):
        raise ValueError(f"--strategy must be ddp or fsdp, got {strategy!r}")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {batch_size}")
    batch_size = batch_size or cfg.data.batch_size
    accum = cfg.train.grad_accum_steps
    if world_size < 1 or batch_size % (world_size * accum):
        raise ValueError(f"batch size {batch_size} does not split over world size {world_size} x "
                         f"train.grad_accum_steps={accum}")
    micro = batch_size // (world_size * accum)
    mode = FakeTensorMode(allow_non_fake_inputs=True)
    batch = example_batch(cfg, micro, mode)

    model = cfg.model.copy()
    model.device = "meta"  # the networks (and their teachers, copies of them) take no memory
    task = instantiate(cfg.task, model=model)
    apply_activation_checkpointing(task, cfg.train.activation_checkpointing)
    steps = cfg.train.max_steps or 1000
    task.setup(total_steps=steps)
    trainable = [p for m in task.trainable_modules().values() for p in m.parameters()]
    optimizer = build_optimizer(cfg.optim.optimizer, param_groups(task.trainable_modules()))
    name = type(optimizer).__name__
    states = OPTIMIZER_STATES.get(name)
    if states is None:
        raise ValueError(f"optim.optimizer: {name} has no entry in vitlab.memory.OPTIMIZER_STATES (state tensors "
                         "per parameter); add it there")
    if name == "SGD" and not optimizer.defaults.get("momentum"):
        states = 0
    trained_ids = {id(p) for p in trainable}
    frozen = [p for p in task.parameters() if id(p) not in trained_ids]
    shard = world_size if strategy == "fsdp" else 1
    plan = MemoryPlan(config_name, batch_size, micro, world_size, strategy, precision,
                      cfg.train.activation_checkpointing, name)
    plan.parts["parameters (trained)"] = _bytes(trainable) // shard
    plan.parts["gradients"] = _bytes(trainable) // shard
    plan.parts[f"optimizer state ({name}, {states} per parameter)"] = states * _bytes(trainable) // shard
    plan.parts["frozen copies (EMA / Gram teachers, their heads)"] = _bytes(frozen) // shard
    plan.parts["buffers"] = _bytes(task.buffers())
    if shard > 1:
        largest = max((_bytes(b.parameters()) for b in compiled_blocks(task)), default=0)
        plan.parts["FSDP: a gathered block and the next (prefetch)"] = 2 * largest * (shard - 1) // shard

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    autocast = torch.autocast("cpu", dtype=dtype) if dtype else contextlib.nullcontext()
    with mode:
        task.to_empty(device="cpu")  # fake parameters and buffers: shapes, no memory
        fake = torch.utils._pytree.tree_map(
            lambda t: mode.from_tensor(t) if isinstance(t, torch.Tensor) and not is_fake(t) else t, batch)
    # The step runs outside the mode: ops on fake tensors stay fake, and the task's own random draws on
    # real scalars (mixup's lambda, a RandomChoice) keep their values.
    task.train()
    exclude = [*task.parameters(), *task.buffers()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fake tensors have no data pointers: caches keyed on them warn
        task.before_step(steps - 1)  # every milestone passed: the Gram teacher, if any, runs
        with SavedTensors(exclude=exclude) as saved, autocast:
            task.training_step(fake)
        full = SavedTensors(exclude=exclude)
        checkpointed = [m for m in task.modules() if any(getattr(m, "checkpointed", ()))]
        recompute = 0
        if checkpointed:  # the step again without checkpointing: the largest block a backward recomputes
            for net in checkpointed:
                net.set_activation_checkpointing(None)
            with full, autocast, contextlib.ExitStack() as stack:
                for net in checkpointed:
                    stack.enter_context(full.per_block(net))
                task.training_step(fake)
            recompute = max(nbytes for label, nbytes in full.calls)
    plan.parts["activations (saved for backward)"] = saved.total
    if recompute:
        plan.parts["a checkpointed block recomputed in backward"] = recompute
        plan.notes.append(f"without checkpointing the activations would be {full.total / GiB:.3f} GiB")
    plan.notes.append("not counted: the backward's transient gradients of activations, the allocator's "
                      "fragmentation, CUDA context and kernels' workspaces (allow ~10-20%)")
    return plan


def format_plan(plan: MemoryPlan) -> str:
    """The table ``vitlab flops --memory`` prints."""
    width = max(len(k) for k in plan.parts) + 2
    lines = [f"memory plan per device: global batch {plan.batch_size} -> {plan.micro_batch} images per device and "
             f"micro-batch (world size {plan.world_size}, {plan.strategy}), {plan.precision}, "
             f"activation checkpointing {plan.checkpointing}",
             f"{'part':<{width}} {'GiB':>10} {'share':>7}"]
    for name, nbytes in plan.parts.items():
        lines.append(f"{name:<{width}} {nbytes / GiB:>10.3f} {100 * nbytes / max(plan.total, 1):>6.1f}%")
    lines.append(f"{'total':<{width}} {plan.total / GiB:>10.3f}")
    lines += [f"note: {n}" for n in plan.notes]
    return "\n".join(lines)
