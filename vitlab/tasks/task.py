"""The task interface: what a training method (supervised, DINOv3, ...) gives the trainer.

A task is an ``nn.Module`` built from the ``task`` config with the ``model`` config injected
(``instantiate(cfg.task, model=cfg.model)``), so a task can build one network (classification) or
several from the same config (DINO's student and teacher). The trainer knows nothing else about it:

- ``self.model``: the network the ``model`` config describes; checkpoints store its ``state_dict`` under
  ``model`` (what evaluation and converters read). Other submodules and buffers (EMA teacher, heads,
  loss centers) are in ``task.state_dict()`` and stored under ``task``. A task whose network has a
  better name registers it under that name and makes ``model`` a property returning it (DINOv3: its
  EMA ``teacher``); checkpoints store it under ``model`` all the same.
- ``training_step(batch) -> (loss, metrics)``: a scalar loss to back-propagate and a dict of scalar
  tensors to log (``train/<name>``). ``forward`` calls it, so DDP/FSDP wrap the task itself.
- ``trainable_modules() -> {name: module}``: what the optimizer trains (parameter groups, weight-decay
  exemptions and layer-wise lr decay come from each module's ``no_weight_decay``/``layer_id``). Frozen
  parts (an EMA teacher) are left out and should have ``requires_grad=False``.
- ``setup(total_steps)``: called once before training; build per-step schedules here
  (``vitlab.engine.as_schedule(spec, total_steps)``) for momentum, temperatures, loss weights.
- ``before_step(step) -> dict``: set scheduled values for this step; return them to be logged
  (``schedule/<name>``).
- ``before_optimizer_step(step)``: after backward (gradients unscaled), before clipping and the
  optimizer step: e.g. drop the gradient of parameters frozen for the first steps.
- ``after_optimizer_step(step)``: runs only after a step that updated the weights (EMA teachers).
  A step skipped for a non-finite loss or gradient skips this hook too.
- ``train_flops(batch) -> int | None``: analytic FLOPs (forward + backward, :mod:`vitlab.flops`) of
  ``training_step(batch)``, for the trainer's ``train/tflops`` and ``train/mfu``; None if unknown.
- ``load_pretrained(weights) -> InitReport``: ``train.init_from``'s weights into the networks before training
  (default: :func:`vitlab.engine.init_from.load_matching` into ``self.model``).
- ``evaluate(make_loader, protocol) -> {name: float}``: eval metrics (logged as ``val/<name>``);
  ``make_loader(split)`` returns a DataLoader of ``data.<split>`` or of a split of the frozen-feature
  protocol (``holdout``, ``monitor_bank``: :mod:`vitlab.data.protocol_splits`) with the eval transform, sharded
  over ranks (reduce results with ``vitlab.engine.distributed.all_reduce_mean``/sums); ``protocol`` is
  the run's ``eval`` section (:class:`vitlab.config.EvalConfig`).
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from vitlab.engine.init_from import InitReport, PretrainedWeights, load_matching

__all__ = ["Task"]


class Task(nn.Module):
    """Base class with the interface's defaults; subclasses set ``self.model`` and ``training_step``."""

    model: nn.Module

    def training_step(self, batch: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError

    def forward(self, batch: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.training_step(batch)

    def trainable_modules(self) -> dict[str, nn.Module]:
        return {"model": self.model}

    def setup(self, *, total_steps: int) -> None:
        """Called once before the first step."""

    def before_step(self, step: int) -> dict[str, float]:
        return {}

    def before_optimizer_step(self, step: int) -> None:
        """Called after backward, before gradient clipping and the optimizer step."""

    def after_optimizer_step(self, step: int) -> None:
        """Called after the weights were updated at ``step``."""

    def train_flops(self, batch: Any) -> int | None:
        """FLOPs of ``training_step(batch)`` from the networks' analytic counts; None: not counted."""
        return None

    def load_pretrained(self, weights: PretrainedWeights) -> InitReport:
        """Put pretrained weights into the network(s) before training; returns what was loaded."""
        return load_matching(self.model, weights, owner="model.")

    def evaluate(self, make_loader: Callable[[str], Any], protocol: Any = None) -> dict[str, float]:
        return {}
