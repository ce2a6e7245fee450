"""Supervised control for the scenes' DINO runs (issue 28): the same "HR" * 2 hybrid and 112 px scenes,
trained with the scene label (the class of the largest visible item), batch 32, as long as a DINO run:

    vitlab train experiments/classify_scenes.py                      # 200 steps, as dinov3_scenes
    vitlab train experiments/classify_scenes.py train.max_steps=1000

What a k-NN on the scene label can gain in that many steps when the label itself is the objective
(benchmarks/ssl_scenes.md).
"""

from configs.data.fmnist_scenes import data
from configs.models.hybrid_fmnist import model
from configs.optim.adamw import optim
from configs.train.default import train
from experiments.dinov3_scenes import eval  # noqa: F401,A004 (the scenes' protocol: its k-NN splits)
from vitlab.config import L
from vitlab.tasks import ClassificationTask

model.image_size, model.patch_size, model.num_classes = 112, 8, 10
model.mask_token = False  # no masked-image objective
task = L(ClassificationTask)(label_smoothing=0.1)  # DeiT's smoothing
data.train.num_scenes, data.val.num_scenes = 20000, 2000  # dinov3_scenes' scenes, with their label
data.train.masks = data.val.masks = False
data.batch_size = 32
optim.lr.base = 2e-3
train.max_steps = 200
train.eval_every = None  # val top-1 at the end
train.log_every = 20
train.checkpoint_every = 200
train.output_dir = "runs/classify_scenes"
