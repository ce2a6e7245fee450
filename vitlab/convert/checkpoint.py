"""The vitlab checkpoint a conversion writes: ``{"model": state_dict, "config": YAML}``.

The format is the training engine's: ``config`` is the YAML of a config with a ``model`` key, so
``instantiate(cfg.model)`` rebuilds the network and ``torch.load(path, weights_only=True)`` reads
the file without running pickled code.
"""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from vitlab.config import instantiate
from vitlab.convert.state_dict import load_strict

__all__ = ["load_vitlab_checkpoint", "save_vitlab_checkpoint"]


def save_vitlab_checkpoint(model: nn.Module, model_cfg: DictConfig, path: str | Path) -> Path:
    """Write ``model``'s weights and its ``L(...)`` config to ``path`` (a sibling ``.yaml`` gets the config too)."""
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    yaml = OmegaConf.to_yaml(DictConfig({"model": model_cfg}), resolve=False)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"model": state, "config": yaml}, tmp)
    tmp.replace(path)
    path.with_suffix(".yaml").write_text(yaml)
    return path


def load_vitlab_checkpoint(path: str | Path) -> nn.Module:
    """The model of a vitlab checkpoint, built from its config, weights loaded strictly, in eval mode."""
    ckpt = torch.load(Path(path).expanduser(), map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or not {"model", "config"} <= set(ckpt):
        raise ValueError(f"{str(path)!r} is not a vitlab checkpoint (a dict with 'model' and 'config')")
    cfg = OmegaConf.create(ckpt["config"])
    if "model" not in cfg:
        raise ValueError(f"the config in {str(path)!r} has no 'model' key")
    model = instantiate(cfg.model)
    load_strict(model, ckpt["model"])
    return model.eval()
