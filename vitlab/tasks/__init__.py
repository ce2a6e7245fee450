"""Training methods on top of the trainer: the task interface, supervised classification, DINOv3, and
distillation of a frozen teacher."""

from vitlab.tasks.classification import ClassificationTask, topk_correct
from vitlab.tasks.dino import DINOv3Task
from vitlab.tasks.distill import DistillationTask
from vitlab.tasks.task import Task

__all__ = ["Task", "ClassificationTask", "DINOv3Task", "DistillationTask", "topk_correct"]
