"""Distilling a frozen DINOv3 teacher into the quickstart's ``"HR" * 2`` hybrid, at the quickstart's budget
(280 steps of 64 images, its data, optimiser and schedules): DINOv3's distillation (the teacher's
Sinkhorn-Knopp-centred DINO and iBOT targets for the student's fresh heads, ``vitlab.tasks.distill``).
The teacher is ``experiments/dinov3_fmnist.py``'s final checkpoint (the same hybrid at patch 7, 2800 steps):

    vitlab train experiments/dinov3_fmnist.py train.output_dir=runs/dinov3_fmnist
    vitlab train experiments/distill_fmnist.py

The teacher temperature is the one the teacher was trained with (0.04, as DINOv3 distils with its
teacher's final temperature). README "Distilling a frozen teacher into a hybrid" has the measured table.
"""

from experiments.dinov3_quickstart import data, model, optim, train  # noqa: F401
from vitlab.config import L
from vitlab.tasks.distill import DistillationTask

task = L(DistillationTask)(teacher="runs/dinov3_fmnist/checkpoints/step_00002800.pt", mode="heads", teacher_temp=0.04)
train.best_metric = "val/knn_top1"
