"""The ViT-S-sized ``"HR" * 6`` hybrid (Hyena 2D + RoPE attention, 4 registers) trained supervised on
ImageNet-1k with DeiT III's recipe (configs/recipes/deit3_im1k.py). Width and depth are ViT-S's, so the
model-dependent numbers are those of DeiT III's ViT-S (facebookresearch/deit README_revenge.md, 81.4%).
Set the data roots, then:

    torchrun --nproc_per_node 8 -m vitlab train experiments/deit3_hybrid_im1k.py \
        data.train.root=/data/imagenet/train data.val.root=/data/imagenet/val
"""

from configs.models.hybrid_small_p16 import model
from configs.recipes.deit3_im1k import PER_256, data, optim, task, train  # noqa: F401

model.max_drop_path_rate = 0.05  # README_revenge.md ViT-S: --drop-path 0.05
model.drop_path_schedule = "constant"  # models_v2.py: dpr_constant=True, the same rate in every block
model.layer_types.H.layer_scale_init = 1e-4  # models_v2.py: LayerScale init_scale=1e-4 for every size
model.layer_types.R.layer_scale_init = 1e-4
optim.lr.base = 4e-3 * PER_256  # README_revenge.md ViT-S: --lr 4e-3 at batch 2048 (ViT-B/L/H: 3e-3)
