"""The training engine: the loop (``trainer``) and its parts, one file each.

``checkpoint`` (format, atomic writes), ``sharded`` (per-rank DCP checkpoints), ``resume`` (whole-state
save/restore), ``optim`` (parameter groups), ``schedules`` (per-step scalars), ``precision`` (AMP),
``logging`` (TensorBoard, jsonl), ``distributed`` (torchrun, DDP, FSDP2), ``nonfinite`` (NaN guard),
``batches`` (data stream).
"""

from vitlab.engine.checkpoint import (
    CheckpointManager,
    build_model_from_checkpoint,
    latest_checkpoint,
    load_checkpoint,
    save_atomic,
)
from vitlab.engine.nonfinite import NonFiniteError, NonFiniteGuard
from vitlab.engine.optim import build_optimizer, param_groups, set_hyperparams
from vitlab.engine.schedules import Schedule, as_schedule
from vitlab.engine.trainer import Trainer, train

__all__ = ["CheckpointManager", "build_model_from_checkpoint", "latest_checkpoint", "load_checkpoint",
           "save_atomic", "NonFiniteError", "NonFiniteGuard", "build_optimizer", "param_groups",
           "set_hyperparams", "Schedule", "as_schedule", "Trainer", "train"]
