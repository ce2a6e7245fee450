"""The model presets (``configs/models/*.py``): found in a checkout and in an installed wheel.

A source checkout (or an editable install) reads them from ``configs/models/``; a wheel ships the same
files as ``vitlab/presets/configs/models/`` (see setup.py), the way detectron2's ``model_zoo`` ships its
configs. Either way a preset is a config file loaded by path with :func:`~vitlab.config.load_config`, so
its ``from configs.models.x import model`` resolves next to it and every load is fresh.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from vitlab.config.io import load_config

__all__ = ["model_presets_dir", "model_presets", "model_preset_path", "load_model_preset"]

_PACKAGE = Path(__file__).resolve().parents[1]  # the vitlab package folder


def model_presets_dir() -> Path:
    """The folder of the model presets: the wheel's copy, else the checkout's ``configs/models``."""
    shipped = _PACKAGE / "presets" / "configs" / "models"
    if shipped.is_dir():
        return shipped
    checkout = _PACKAGE.parent / "configs" / "models"
    if checkout.is_dir() and (_PACKAGE.parent / "pyproject.toml").is_file():  # not some other `configs`
        return checkout
    raise FileNotFoundError(f"no model presets next to vitlab ({_PACKAGE}): neither {shipped} (a wheel) nor "
                            f"{checkout} (a source checkout) exists")


def model_presets() -> list[str]:
    """Names of the presets (file stems, sorted): ``vit_small_p16``, ``hybrid_small_p16``, ..."""
    return sorted(p.stem for p in model_presets_dir().glob("*.py") if p.name != "__init__.py")


def model_preset_path(name: str) -> Path:
    """The file of preset ``name``."""
    names = model_presets()
    if name not in names:
        raise ValueError(f"unknown model preset {name!r}; the presets are: {', '.join(names)}")
    return model_presets_dir() / f"{name}.py"


def load_model_preset(name: str) -> DictConfig:
    """The ``model`` config (an ``L(HybridViT)``) of preset ``name``, freshly loaded: edit it freely."""
    path = model_preset_path(name)
    cfg = load_config(path)
    if "model" not in cfg:
        raise ValueError(f"model preset {str(path)!r} defines no `model`")
    return cfg.model
