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


def test_mixer_study_variants_cost_what_the_hybrid_costs():
    """``experiments/ablate_mixers.py``: every ``"XR" * 2`` variant and the control at the hybrid's forward FLOPs, each X
    a different mixer, and its matched ratio the closest on match_flops's 0.1 grid (so a changed mixer's count shows)."""
    import copy

    from vitlab.config import apply_overrides
    from vitlab.flops_match import forward_flops

    study = load_config(ROOT / "experiments" / "ablate_mixers.py")
    target = forward_flops(load_config(ROOT / "experiments" / "dinov3_scenes.py").model)
    mixers = set()
    for name, overrides in study.sweep.variants.items():
        cfg = copy.deepcopy(study)
        apply_overrides(cfg, list(overrides))
        pattern = cfg.model.layer_pattern
        assert pattern[1::2] == "RR" and len(pattern) == 4, (name, pattern)
        mixer = cfg.model.layer_types[pattern[0]].mixer_layer._target_
        mixers.add(mixer.rsplit(".", 1)[-1] if pattern[0] != "R" else "control")
        assert abs(forward_flops(cfg.model) / target - 1) < 0.005, (name, overrides)
        if overrides:  # one step of the ratio either way is farther from the target
            key, ratio = overrides[-1].split("=")
            for other in (float(ratio) - 0.1, float(ratio) + 0.1):
                trial = copy.deepcopy(cfg)
                apply_overrides(trial, [f"{key}={other:.1f}"])
                assert abs(forward_flops(trial.model) - target) > abs(forward_flops(cfg.model) - target), (name, other)
    assert mixers == {"Hyena2D", "Mamba2D", "GLA2D", "NeighborhoodAttention", "GatedConv", "control"}
    assert len(study.sweep.variants) == 7 and study.sweep.seeds == 3
