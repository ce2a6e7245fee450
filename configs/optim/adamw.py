"""AdamW with linear warmup then cosine decay of the lr (DeiT recipe shapes); the other settings
(layer decay, lr scaling, ...) are :class:`vitlab.config.OptimConfig`'s defaults."""

from omegaconf import OmegaConf

import torch

from vitlab.config import L, OptimConfig
from vitlab.engine import Schedule

optim = OmegaConf.structured(OptimConfig(
    optimizer=L(torch.optim.AdamW)(betas=[0.9, 0.999]),
    lr=L(Schedule)(base=1e-3, final=1e-6, warmup_steps=500, kind="cosine"),  # total_steps from the run
    weight_decay=0.05,  # DeiT; a number is a constant schedule
))
