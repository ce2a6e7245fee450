"""The all-attention control of ``dinov3_scenes``: 4 RoPE attention blocks in place of "HR" * 2, with the
FFN widened (ratio 4.4) so a forward costs what the hybrid's does (0.423 GFLOPs per image, ``vitlab flops``).

    vitlab train experiments/dinov3_scenes_attn.py
"""

from experiments.dinov3_scenes import data, eval, model, optim, task, train  # noqa: F401, A004

model.layer_pattern = "R" * 4
model.layer_types.R.ffn.ratio = 4.4
train.output_dir = "runs/dinov3_scenes_attn"
