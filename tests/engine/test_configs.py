"""Every config piece owned by the engine loads, and the Fashion-MNIST experiment builds at tiny size."""

from pathlib import Path

import pytest

from vitlab.config import apply_overrides, instantiate, load_config
from vitlab.engine import as_schedule

ROOT = Path(__file__).resolve().parents[2]
PIECES = sorted(str(p.relative_to(ROOT)) for d in ("configs/data", "configs/optim", "configs/train")
                for p in (ROOT / d).glob("*.py") if p.name != "__init__.py")


@pytest.mark.parametrize("path", PIECES)
def test_config_piece_loads(path):
    cfg = load_config(ROOT / path)
    assert set(cfg) <= {"data", "optim", "train"} and len(cfg) == 1


def test_experiment_builds():
    cfg = load_config(ROOT / "experiments/classify_fmnist.py")
    apply_overrides(cfg, ["model.num_blocks=2", "model.layer_pattern=HR", "model.dim=32"])
    task = instantiate(cfg.task, model=cfg.model)
    assert task.model.num_classes == 10 and task.model.in_channels == 1
    assert as_schedule(cfg.optim.lr, 1000)(cfg.optim.lr.warmup_steps) == pytest.approx(cfg.optim.lr.base)
