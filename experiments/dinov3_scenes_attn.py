"""The all-attention control of ``dinov3_scenes``: 4 RoPE attention blocks in place of "HR" * 2, with the
FFN widened so a forward costs what the hybrid's does (0.4231 GFLOPs per image against 0.4229, +0.05%).

    vitlab train experiments/dinov3_scenes_attn.py
"""

from experiments.dinov3_scenes import data, eval, model, optim, task, train  # noqa: F401, A004

model.layer_pattern = "R" * 4
# the FFN ratio that matches the hybrid's forward FLOPs at 112x112 on a 0.1 grid, found by
# vitlab flops experiments/dinov3_scenes_attn.py --match experiments/dinov3_scenes.py --vary model.layer_types.R.ffn_layer.ratio
model.layer_types.R.ffn_layer.ratio = 4.4
train.output_dir = "runs/dinov3_scenes_attn"
