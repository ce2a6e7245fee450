"""Which mixer pairs best with attention: ``"XR" * 2`` on the scenes (``experiments/dinov3_scenes.py``), X each of
Hyena 2D and the four new mixers (``configs/blocks/mixer_blocks.py``), and the all-attention control, every one at
the hybrid's forward FLOPs at 112 px (X's FFN ratio, or R's for the control, found on a 0.1 grid by
``vitlab flops ... --match experiments/dinov3_scenes.py --vary model.layer_types.X.ffn_layer.ratio``:
0.4218-0.4234 against 0.4229 GFLOPs, within 0.3%; ``tests/test_equal_flops_controls.py`` checks). DINOv3-pretrained, scored
by k-NN, linear and seg probes against each run's random init and raw pixels; 3 seeds.

    vitlab sweep experiments/ablate_mixers.py
"""

from omegaconf import OmegaConf

from configs.blocks.mixer_blocks import MIXER_BLOCKS
from experiments.dinov3_scenes import data, eval, model, optim, task, train  # noqa: F401, A004

model.layer_types.update(MIXER_BLOCKS)
model.layer_types.L.mixer_layer.num_heads = model.layer_types.N.mixer_layer.num_heads = 4  # head dim 32, as R's
RATIO = "model.layer_types.{}.ffn_layer.ratio={}"
MATCHED = {"S": 4.0, "V": 2.8, "L": 5.5, "N": 5.9, "C": 4.2}  # X's FFN ratio at equal forward FLOPs

sweep = OmegaConf.create(dict(
    variants={"H": []} | {x: [f"model.layer_pattern={x}R{x}R", RATIO.format(x, r)] for x, r in MATCHED.items()}
    | {"A": ["model.layer_pattern=RRRR", RATIO.format("R", 4.4)]},  # experiments/dinov3_scenes_attn.py
    out="runs/sweeps/ablate_mixers",
    seeds=3,
))
