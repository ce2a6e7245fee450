"""The all-attention student of ``distill_fmnist``: 4 RoPE attention blocks in place of "HR" * 2, the FFN
widened (ratio 4.82) so a forward costs what the hybrid's does (102.6 against 102.7 MFLOPs per image,
``vitlab flops``).

    vitlab train experiments/distill_fmnist_attn.py
"""

from experiments.distill_fmnist import data, model, optim, task, train  # noqa: F401

model.layer_pattern = "R" * 4
model.layer_types.R.ffn_layer.ratio = 4.82
