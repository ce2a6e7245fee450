"""DINOv3 pretraining of the Fashion-MNIST hybrid ("HR" * 2) on Fashion-MNIST scenes at 112x112
(patch 8: 196 patch tokens), for the dense (segmentation) probe:

    vitlab train experiments/dinov3_scenes.py
    vitlab eval seg --checkpoint runs/dinov3_scenes/checkpoints/step_00000400.pt  # --init: its random init

``experiments/dinov3_scenes_attn.py`` is the all-attention backbone of equal FLOPs. The views and targets are
the ones that took the scenes' DINO loss off ln K (``benchmarks/ssl_scenes.md``; the small-budget recipe's own
sat at ln K and fired the collapse watch).
"""

from omegaconf import OmegaConf

from configs.data.fmnist_scenes_multicrop import data
from configs.recipes.dinov3_small_budget import model, optim, set_budget, task, train  # noqa: F401
from vitlab.config import EvalConfig

model.image_size = 112
model.patch_size = 8
data.batch_size = 32  # 4x the fmnist tokens per image: half the batch
data.train_transform.global_crops_scale = [0.9, 1.0]  # near-identical global crops
data.train_transform.local_crops_scale = [0.4, 0.8]  # no small local crops
data.collate.masker.mask_probability = 0.25  # iBOT masks on a quarter of the global crops (DINOv3: half)
task.teacher_temp.base = 0.02  # sharper targets (the recipe: 0.04)
train.output_dir = "runs/dinov3_scenes"
eval = OmegaConf.structured(EvalConfig(  # noqa: A001 (the section)
    val_size=2000, monitor_bank=4000,  # the online k-NN on scenes (label: the largest item)
    seg_data="configs/data/fmnist_scenes.py",  # vitlab eval seg: the scenes with their label maps
    protocols=["knn", "linear", "seg"]))
set_budget(400, evals=2)
