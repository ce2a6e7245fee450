"""The all-attention controls cost what their hybrids cost: a forward's FLOPs within 0.5%."""

from pathlib import Path

import pytest

from vitlab.config import instantiate, load_config

ROOT = Path(__file__).resolve().parents[1]
PAIRS = [("dinov3_quickstart.py", "dinov3_quickstart_attn.py"), ("distill_fmnist.py", "distill_fmnist_attn.py"),
         ("dinov3_scenes.py", "dinov3_scenes_attn.py")]


def flops(name):
    cfg = load_config(ROOT / "experiments" / name)
    return cfg.model.layer_pattern, instantiate(cfg.model, device="meta").flop_count()


@pytest.mark.parametrize("hybrid,control", PAIRS)
def test_control_is_all_attention_at_the_hybrids_flops(hybrid, control):
    (h_pattern, h_flops), (c_pattern, c_flops) = flops(hybrid), flops(control)
    assert set(c_pattern) == {"R"} and set(h_pattern) != {"R"} and len(c_pattern) == len(h_pattern)
    assert abs(c_flops / h_flops - 1) < 0.005, (hybrid, h_flops, control, c_flops)
