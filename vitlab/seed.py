"""Seeding: the one call that makes a run's random draws repeat (the trainer's first step, and
:func:`vitlab.weights.build_model_from_checkpoint` rebuilding a run's initialisation)."""

from __future__ import annotations

import random

import numpy as np
import torch

__all__ = ["seed_everything"]


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
