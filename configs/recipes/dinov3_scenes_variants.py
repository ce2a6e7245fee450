"""One-change variants of ``experiments/dinov3_scenes.py`` (the small-budget recipe on 112 px scenes, 200
steps of 32 images), each a candidate cause of its DINO loss sitting at ln K (``benchmarks/ssl_scenes.md``).
``experiments/ablate_dino_scenes.py`` runs them with ``vitlab sweep``.
"""

from omegaconf import OmegaConf

CROPS = "data.train_transform.{}_crops_scale"
NEAR = [CROPS.format("global") + "=[0.9,1.0]", CROPS.format("local") + "=[0.4,0.8]"]  # near-identical views
NO_LOCAL, NO_MASK = "data.train_transform.local_crops_number=0", "data.collate.masker.mask_probability=0.0"
FREEZE = "{_target_:vitlab.engine.Schedule,base:1.0,freeze_fraction:0.3,kind:constant}"  # weight 0, then 1
WARMUP = "{_target_:vitlab.engine.Schedule,base:1.0,warmup_fraction:0.5,kind:constant}"  # 0 -> 1 linearly

sweep = OmegaConf.create(dict(variants={
    "base": [],
    "local2": ["data.train_transform.local_crops_number=2"],  # 4 of 6 DINO pairs local, not 12 of 14
    "crops06": [CROPS.format("global") + "=[0.6,1.0]", CROPS.format("local") + "=[0.15,0.6]"],
    "crops09": [CROPS.format("global") + "=[0.9,1.0]", CROPS.format("local") + "=[0.4,0.8]"],  # near-identical views
    "tt002": ["task.teacher_temp.base=0.02"],  # sharper targets
    "dinowarm": [f"task.dino_weight={WARMUP}"],
    "dinofreeze3": [f"task.dino_weight={FREEZE}"],  # heads at their init until the backbone separates images
    "clipmod": ["train.clip_grad_scope=module"],  # DINOv3: backbone and heads clipped apart
    "k256": ["task.dino_head.out_dim=256", "task.ibot_head.out_dim=256"],  # K / 2B: 16 -> 4
    "mom992": ["task.ema_time_fraction=null"],  # DINOv3's 0.992 -> 1 EMA, not 0.96 -> 1 (a slower teacher)
    "wn_off": ["task.dino_head.weight_norm=false"],  # DINOv3's plain prototype layer
    # two changes: the two that sharpened the target most, together
    "crops09_tt002": [*NEAR, "task.teacher_temp.base=0.02"],
    # the prototypes: frozen for the whole run, or their weight-norm gain trained (DINO v1's norm_last_layer=False)
    "pfreeze": ["task.freeze_last_layer_fraction=1.0"],
    "gain": ["task.dino_head.train_gain=true"],
    # no local crops (only the two global-global DINO pairs), then with the other changes
    "c09tt002_local0": [*NEAR, "task.teacher_temp.base=0.02", NO_LOCAL],
    "L0_pfreeze": [*NEAR, NO_LOCAL, "task.freeze_last_layer_fraction=1.0"],
    "L0_nomask": [*NEAR, NO_LOCAL, NO_MASK],  # no iBOT masks: the student's global crops unmasked, iBOT off
    "L0_cent": [*NEAR, NO_LOCAL, "task.teacher_temp.base=0.02", "task.centering=softmax"],  # DINO's EMA centre
    "sink": [*NEAR, NO_LOCAL, "task.teacher_temp.base=0.02", "task.freeze_last_layer_fraction=1.0", NO_MASK],
    "sink_nocrop": [NO_LOCAL, "task.teacher_temp.base=0.02", "task.freeze_last_layer_fraction=1.0", NO_MASK],
    "L0_gain": [*NEAR, NO_LOCAL, "task.teacher_temp.base=0.02", NO_MASK, "task.dino_head.train_gain=true"],
    "L0_gain_ibot": [*NEAR, NO_LOCAL, "task.teacher_temp.base=0.02", "task.dino_head.train_gain=true"],
    # L0_gain with one change put back: the gain frozen again, the recipe's teacher temperature, its global crops, its
    # six local crops (the iBOT masks back on is L0_gain_ibot)
    "rv_gain": [*NEAR, NO_LOCAL, "task.teacher_temp.base=0.02", NO_MASK],
    "rv_tt": [*NEAR, NO_LOCAL, NO_MASK, "task.dino_head.train_gain=true"],
    "rv_crops": [NO_LOCAL, "task.teacher_temp.base=0.02", NO_MASK, "task.dino_head.train_gain=true"],
    "rv_local": [*NEAR, "task.teacher_temp.base=0.02", NO_MASK, "task.dino_head.train_gain=true"],
    # the three changes with half of DINOv3's iBOT mask probability (a quarter of the global crops masked), 400 steps
    "L0_tt002_m025_400": [*NEAR, NO_LOCAL, "task.teacher_temp.base=0.02", "data.collate.masker.mask_probability=0.25",
                          "train.max_steps=400", "train.checkpoint_every=200", "train.eval_every=200"],
    "base_400": ["train.max_steps=400", "train.checkpoint_every=200", "train.eval_every=200"],  # the recipe, 400 steps
    "c09_tt002_m025_400": [CROPS.format("global") + "=[0.9,1.0]", "task.teacher_temp.base=0.02",
                           "data.collate.masker.mask_probability=0.25", "train.max_steps=400", "train.checkpoint_every=200",
                           "train.eval_every=200"],  # the same with the recipe's six local crops
    "c09l_tt002_m025_400": [*NEAR, "task.teacher_temp.base=0.02", "data.collate.masker.mask_probability=0.25",
                            "train.max_steps=400", "train.checkpoint_every=200",
                            "train.eval_every=200"],  # the same with six local crops at 0.4-0.8
}))
