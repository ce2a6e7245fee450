"""The model presets are found by name (vitlab/config/presets.py), in a checkout as in a wheel (tests/test_wheel.py)."""

from pathlib import Path

import pytest

from vitlab.config import instantiate, load_model_preset, model_preset_path, model_presets, model_presets_dir

ROOT = Path(__file__).resolve().parents[2]


def test_a_checkout_reads_configs_models():
    assert model_presets_dir() == ROOT / "configs" / "models"
    assert model_presets() == sorted(p.stem for p in (ROOT / "configs/models").glob("*.py") if p.name != "__init__.py")
    assert model_preset_path("vit_small_p16") == ROOT / "configs/models/vit_small_p16.py"


def test_every_load_is_fresh():
    """vit_base_p16 edits the model it imports from vit_small_p16; neither edit leaks into the next load."""
    base = load_model_preset("vit_base_p16")
    base.dim = 8
    assert load_model_preset("vit_small_p16").dim == 384
    assert load_model_preset("vit_base_p16").dim == 768
    assert instantiate(load_model_preset("vit_tiny_p16"), device="meta").dim == 192


@pytest.mark.parametrize("name", ["vit_smal_p16", "__init__", "../models/vit_small_p16", "vit_small_p16.py"])
def test_unknown_preset_lists_the_presets(name):
    with pytest.raises(ValueError, match=r"unknown model preset .*vit_small_p16"):
        model_preset_path(name)
