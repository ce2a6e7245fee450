"""One-change variants of the small-budget DINOv3 recipe (``dinov3_small_budget.py``): the ablations behind
its choices (``benchmarks/ssl_recipe.md``). Each variant changes one setting of the recipe and keeps the
others, so its row reads as that change's effect; ``dinov3`` puts back all three of DINOv3's values that
the recipe departs from. ``experiments/ablate_ssl_recipe.py`` runs them with ``vitlab sweep``.
"""

from omegaconf import OmegaConf

LAYER_SCALE = ("model.layer_types.H.layer_scale_init", "model.layer_types.R.layer_scale_init")
DINOV3_EMA = ["task.ema_time_fraction=null", "task.momentum.base=0.992"]  # DINOv3's 0.992 -> 1 at any run length
P7 = ["model.patch_size=7", "data.train_transform.local_crops_size=14",  # set_patch(7, 14): 2.6x fewer tokens
      "data.collate.masker.mask_generator.grid_size=[4,4]"]
CROPS_06 = ["data.train_transform.global_crops_scale=[0.6,1.0]",  # DINOv3: 0.32-1 and 0.05-0.32
            "data.train_transform.local_crops_scale=[0.15,0.6]"]
NO_BLUR = ["data.train_transform.blur_p=[0.0,0.0,0.0]"]  # at 28 px a 3x3 blur of sigma up to 2 removes most detail

sweep = OmegaConf.create(dict(variants={
    "recipe": [],
    "dinov3": [f"{k}=1e-5" for k in LAYER_SCALE] + ["optim.lr.base=1e-3", *DINOV3_EMA],
    "ls_1e-5": [f"{k}=1e-5" for k in LAYER_SCALE],  # DINOv3's LayerScale init
    "ls_0.1": [f"{k}=0.1" for k in LAYER_SCALE],  # CaiT's init for depth <= 18
    **{f"lr_{lr}": [f"optim.lr.base={lr}"] for lr in ("1e-3", "2e-3", "8e-3")},  # DINOv3's base lr: 1e-3
    "mom_0.992": DINOV3_EMA,
    "local_2": ["data.train_transform.local_crops_number=2"],
    "p7_recipe": P7,
    "p7_400": [*P7, "train.max_steps=400"],  # and twice the steps (every milestone follows the length)
    "tt_0.07": ["task.teacher_temp.base=0.07"],  # DINOv3's teacher temperature after its warmup
    "proto_4096": ["task.dino_head.out_dim=4096", "task.ibot_head.out_dim=4096"],  # DINOv3: 65536 / 8192
    "gram_off": ["task.gram=null"],
    **{f"koleo_{w}": [f"task.koleo_weight={w}"] for w in ("0", "0.3", "1.0")},  # DINOv3: 0.1
    "crops_0.6": CROPS_06,
    "blur_off": NO_BLUR,
    "gentle": [*CROPS_06, *NO_BLUR, "data.train_transform.solarize_p=0"],
}))
