"""Registers x readouts ablation on the DINOv3 quickstart: every combination pretrains, then is
evaluated, with its own random init and raw pixels as baselines, by k-NN and a linear probe on frozen
features under vitlab's evaluation protocol; 3 seeds each; results in a table and a plot.

    vitlab sweep experiments/ablate_registers_readouts.py

``register_concat`` needs registers, so its 0-register run fails at construction and is reported as
failed in the table (the others go on). ``eval.readout=model`` evaluates the readout the run pretrained
with; ``cls+gap`` adds the DINOv2/v3 linear-probe feature where a CLS token exists.
"""

from omegaconf import OmegaConf

from configs.recipes.dinov3_small_budget import data, model, optim, set_budget, task, train  # noqa: F401

model.neck_compression_ratio = 4  # register_concat: Linear(128, 32) per register
set_budget(150)  # 3/4 of the quickstart per run: the 9 runs took 65 minutes on 2 cores
train.eval_at_start = False

sweep = OmegaConf.create(dict(
    grid=["model.num_registers=4,0,8", "model.readout=cls,gap,register_concat", "eval.readout=model"],
    out="runs/sweeps/ablate_registers_readouts",
    seeds=3,  # mean +- std per configuration (4 registers first: the three readouts side by side)
))
