"""Which mixer pairs best with attention: ``"XR" * 2`` on the scenes (``experiments/dinov3_scenes.py``), X each of
Hyena 2D and the four new mixers (``configs/blocks/mixer_blocks.py``), and the all-attention control, every one at
the hybrid's forward FLOPs at 112 px (X's FFN ratio, or R's for the control, found on a 0.1 grid by
``vitlab flops ... --match experiments/dinov3_scenes.py --vary model.layer_types.X.ffn_layer.ratio``:
0.4218-0.4234 against 0.4229 GFLOPs, within 0.3%; ``tests/test_equal_flops_controls.py`` checks). DINOv3-pretrained, scored
by k-NN, linear and seg probes against each run's random init and raw pixels; 3 seeds.

    vitlab sweep experiments/ablate_mixers.py
"""

from omegaconf import OmegaConf

from configs.blocks.mixer_blocks import MIXER_BLOCKS as _MIXER_BLOCKS  # _: a constant, not a config key
from experiments.dinov3_scenes import data, eval, model, optim, task, train  # noqa: F401, A004

model.layer_types.update(_MIXER_BLOCKS)
model.layer_types.L.mixer_layer.num_heads = model.layer_types.N.mixer_layer.num_heads = 4  # head dim 32, as R's
_RATIO = "model.layer_types.{}.ffn_layer.ratio={}"
# X's FFN ratio at equal forward FLOPs; the sweep runs in this order (the slowest on CPU, V, last)
_MATCHED = {"C": 4.2, "N": 5.9, "S": 4.0, "L": 5.5, "V": 2.8}

sweep = OmegaConf.create(dict(
    variants={"H": [], "A": ["model.layer_pattern=RRRR", _RATIO.format("R", 4.4)]}  # A: dinov3_scenes_attn.py
    | {x: [f"model.layer_pattern={x}R{x}R", _RATIO.format(x, r)] for x, r in _MATCHED.items()},
    out="runs/sweeps/ablate_mixers",
    seeds=3,
))
