"""``FlopCounterMode`` on vitlab models the ways users call it: with autograd on, under
``torch.no_grad()`` and under ``torch.inference_mode()``, in train and eval mode.

torch's module tracker (inside ``FlopCounterMode``) fails on a module input or output that has
``requires_grad`` but no ``grad_fn``: what a view of a parameter is when made under ``no_grad``.
"""

from contextlib import nullcontext
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from tests.models.helpers import tiny
from vitlab.config import L, apply_overrides, instantiate, load_config
from vitlab.flops import CUSTOM_FLOP_FORMULAS, torch_flop_count
from vitlab.layers import LayerNorm

ROOT = Path(__file__).resolve().parents[1]

MODES = {"grad": nullcontext, "no_grad": torch.no_grad, "inference_mode": torch.inference_mode}

MODELS = {
    # learned position embedding at its reference grid: the module once returned views of its parameter
    "A_learned_pos": lambda: tiny("A", num_registers=0),
    "R_no_pos_registers": lambda: tiny("R", pos_embed="none", num_registers=3, readout="register_concat",
                                       neck_compression_ratio=4),
    # Hyena sees the padded sequence; drop path and a mask token exercise the train-mode paths
    "H_padded": lambda: tiny("H", num_registers=2, max_drop_path_rate=0.2, mask_token=True),
    # gated FFN, LayerScale, QK-norm; no CLS token
    "G_no_cls": lambda: tiny("G", class_token=False, readout="gap", pos_embed="none"),
    "HRA_untied_norm": lambda: tiny("HRA", num_registers=1, cls_norm_layer=L(LayerNorm)(),
                                    max_drop_path_rate=0.1),
}


def count(model, x, mode: str) -> int:
    counter = FlopCounterMode(display=False, custom_mapping=CUSTOM_FLOP_FORMULAS)
    with MODES[mode](), counter:
        model(x)
    return counter.get_total_flops()


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("size", [(16, 16), (12, 20)])  # 12 x 20: a 3 x 5 grid, 2 padding tokens for "H"
@pytest.mark.parametrize("train", [False, True])
def test_flop_counter_mode_in_every_grad_mode(name, size, train):
    model = instantiate(MODELS[name]()).train(train)
    x = torch.randn(2, 3, *size)
    analytic = model.flop_count(inference=True, image_size=size, batch_size=2)
    counts = {mode: count(model, x, mode) for mode in MODES}
    assert counts["grad"] == pytest.approx(analytic, rel=0.01)  # the tolerance of tests/test_flops.py
    # the grad mode changes which tensors autograd records, never which matrix products run
    assert counts["no_grad"] == counts["inference_mode"] == counts["grad"]


@pytest.mark.parametrize("mode", ["no_grad", "inference_mode"])
@pytest.mark.parametrize("config", ["dinov3_vits16", "vit_small_p16"])
def test_flop_counter_mode_on_presets(config, mode):
    cfg = load_config(ROOT / f"configs/models/{config}.py")
    apply_overrides(cfg, ["model.num_blocks=1"])
    model = instantiate(cfg.model).eval()
    x = torch.randn(1, 3, 32, 48)
    assert count(model, x, mode) == pytest.approx(model.flop_count(image_size=(32, 48)), rel=0.01)


def test_flop_counter_mode_with_masks_under_no_grad():
    model = instantiate(tiny("R", mask_token=True, pos_embed="learned")).eval()
    x, masks = torch.randn(2, 3, 16, 16), torch.rand(2, 16) < 0.5
    counts = []
    for mode in ("grad", "no_grad"):
        counter = FlopCounterMode(display=False, custom_mapping=CUSTOM_FLOP_FORMULAS)
        with MODES[mode](), counter:
            model.forward_features(x, masks=masks)
        counts.append(counter.get_total_flops())
    assert counts[0] == counts[1] > 0


def test_torch_flop_count_inference_runs_without_autograd():
    model = instantiate(tiny("HRA"))
    analytic = model.flop_count(image_size=16, batch_size=2)
    assert torch_flop_count(model, (16, 16), batch_size=2) == pytest.approx(analytic, rel=0.01)
