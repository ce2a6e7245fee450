"""AdamW with linear warmup then cosine decay of the lr (DeiT recipe shapes)."""

from omegaconf import OmegaConf

import torch

from vitlab.config import L
from vitlab.engine import Schedule

optim = OmegaConf.create(dict(
    optimizer=L(torch.optim.AdamW)(betas=[0.9, 0.999]),
    lr=L(Schedule)(base=1e-3, final=1e-6, warmup_steps=500, kind="cosine"),  # total_steps from the run
    weight_decay=0.05,  # a number is a constant schedule
    layer_decay=1.0,  # 1.0 = off; fine-tuning uses ~0.65-0.75 (BEiT)
    patch_embed_lr_mult=1.0,  # DINOv3 uses 0.2
    lr_scaling=None,  # None: lr as written | sqrt_wrt_1024 (DINOv3) | linear_wrt_256 (Goyal et al.)
    no_weight_decay="timm",  # timm: biases, 1-D params, tokens exempt | dinov3: bias/norm/gamma names only
))
