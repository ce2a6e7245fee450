"""The vitlab checkpoint a conversion writes: ``{"model": state_dict, "config": YAML}``.

The format is the training engine's: ``config`` is the YAML of a config with a ``model`` key, so
``instantiate(cfg.model)`` rebuilds the network and ``torch.load(path, weights_only=True)`` reads
the file without running pickled code.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from torch import nn

from vitlab.engine.checkpoint import save_atomic
from vitlab.weights import build_model_from_checkpoint

__all__ = ["load_vitlab_checkpoint", "save_vitlab_checkpoint"]


def save_vitlab_checkpoint(model: nn.Module, model_cfg: DictConfig, path: str | Path) -> Path:
    """Write ``model``'s weights and its ``L(...)`` config to ``path`` (a sibling ``.yaml`` gets the config too)."""
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    yaml = OmegaConf.to_yaml(DictConfig({"model": model_cfg}), resolve=False)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_atomic({"model": state, "config": yaml}, path)
    path.with_suffix(".yaml").write_text(yaml)
    return path


def load_vitlab_checkpoint(path: str | Path) -> nn.Module:
    """The model of a vitlab checkpoint, built from its config, weights loaded strictly, in eval mode."""
    model, _ = build_model_from_checkpoint(Path(path).expanduser())
    return model.eval()
