"""Training methods on top of the trainer: the task interface, supervised classification, DINOv3."""

from vitlab.tasks.classification import ClassificationTask, topk_correct
from vitlab.tasks.dino import DINOv3Task
from vitlab.tasks.task import Task

__all__ = ["Task", "ClassificationTask", "DINOv3Task", "topk_correct"]
