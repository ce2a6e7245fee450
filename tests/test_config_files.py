"""Every config file under configs/ and experiments/ loads, and its model instantiates at a tiny size."""

from pathlib import Path

import pytest
import torch

from vitlab.config import apply_overrides, instantiate, load_config

ROOT = Path(__file__).resolve().parents[1]
FILES = sorted(p for folder in ("configs", "experiments") for p in (ROOT / folder).rglob("*.py") if p.name != "__init__.py")


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_config_file_loads_and_model_instantiates(path):
    cfg = load_config(path)
    if "model" not in cfg:
        pytest.skip("defines no model")
    full = instantiate(cfg.model, device="meta")
    assert full.flop_count() > 0
    pattern = cfg.model.get("layer_pattern")
    overrides = [f"model.layer_pattern={pattern[:2]}", "model.num_blocks=2"] if pattern else ["model.num_blocks=1"]
    apply_overrides(cfg, overrides)
    model = instantiate(cfg.model).eval()
    p = full.patch_size
    with torch.no_grad():
        out = model(torch.randn(1, full.in_channels, 2 * p, 3 * p))
    assert out.shape[0] == 1 and torch.isfinite(out).all()
