"""DINOv3 pretraining of ViT-S/16 on ImageNet-style ImageFolder data.

Architecture: the released DINOv3 ViT-S/16 (configs/models/dinov3_vits16.py). Recipe: DINOv3's
ImageNet-1k recipe (configs/recipes/dinov3_im1k.py; no ViT-S-specific IN-1k recipe is released).
Set the data roots, then:

    torchrun --nproc_per_node 8 -m vitlab train experiments/dinov3_vits16.py \
        data.train.root=/data/imagenet/train data.val.root=/data/imagenet/val
"""

from configs.models.dinov3_vits16 import model
from configs.recipes.dinov3_im1k import data, optim, task, train  # noqa: F401

model.max_drop_path_rate = 0.3  # student.drop_path_rate
model.drop_path_schedule = "constant"  # DINOv3 applies one rate to every block
model.block_layer.layer_scale_init = 1e-5  # student.layerscale
