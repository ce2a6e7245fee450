"""The quickstart's family, run longer (about 35 minutes on a 2-core CPU) to show that the method learns.

    vitlab train experiments/dinov3_fmnist.py
"""

from experiments.dinov3_quickstart import STEPS as _QUICK, data, model, optim, task, train  # noqa: F401
from vitlab.config import L
from vitlab.engine import Schedule

STEPS = 1000

# DINOv3's teacher temperature warmup 0.04 -> 0.07, over the first third as DINOv3's 30 warmup epochs
task.teacher_temp = L(Schedule)(base=0.07, warmup_start=0.04, warmup_steps=STEPS // 3, kind="constant")
task.gram = dict(start_step=STEPS // 2, load_step=STEPS // 2, update_every=STEPS // 4)
task.freeze_last_layer_steps = STEPS // 20
optim.lr.warmup_steps = STEPS // 10
train.max_steps = STEPS
train.eval_every = 250  # the online k-NN monitor, four times over the run
train.checkpoint_every = 200
