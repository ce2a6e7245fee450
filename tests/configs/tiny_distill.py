"""tiny_dino's data and recipe, distilling a teacher checkpoint (``task.teacher=PATH``) into an "HR" student
on another patch grid (patch 7: a 4 x 4 grid under the quickstart teacher's 7 x 7)."""

from configs.recipes.dinov3_small_budget import set_patch
from omegaconf import OmegaConf
from tests.configs.tiny_dino import data, model, optim, train  # noqa: F401
from vitlab.config import EvalConfig, L
from vitlab.tasks.distill import DistillationTask

set_patch(7, local_crops_size=14)  # the student's grid, local crops and iBOT masks together
model.dim = 48
model.layer_types.R.mixer_layer.num_heads = 3
task = L(DistillationTask)(teacher="???", mode="auto")
data.train_transform.local_crops_number = 2
train.max_steps = 8
optim.lr.warmup_steps = 1
eval = OmegaConf.structured(EvalConfig(val_size=16, monitor_bank=32, ks=[5, 10]))  # noqa: A001 (the section)
