"""Reading weights: vitlab checkpoints and state-dict files, checked key by key against a network, and the
network a checkpoint rebuilds.

The one place every reader loads weights from: ``vitlab eval`` and ``vitlab viz``, ``vitlab export``, the
DINOv3 converters, ``train.init_from``, a distillation's teacher and resuming. The training engine writes
checkpoints (:mod:`vitlab.engine.checkpoint`, whose docstring gives the format: a dict with the ``model``
state dict and the run's ``config`` YAML, readable with ``torch.load(path, weights_only=True)``; or a
sharded directory, which :func:`require_file` names with how to consolidate it).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from torch import nn

from vitlab.config import instantiate, typed_sections
from vitlab.seed import seed_everything

__all__ = ["SHARDED_METADATA", "is_sharded_checkpoint", "require_file", "load_checkpoint", "load_state_dict_file",
           "StateDictMismatchError", "check_state_dict", "load_model_state", "student_weights",
           "build_model_from_checkpoint"]

SHARDED_METADATA = ".metadata"  # DCP's index, written last: what makes a directory a sharded checkpoint
StateDict = dict[str, torch.Tensor]


def is_sharded_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` is a sharded checkpoint directory (one holding DCP's ``.metadata``)."""
    return Path(path).is_dir() and (Path(path) / SHARDED_METADATA).is_file()


def require_file(path: str | Path, what: str = "checkpoint") -> Path:
    """``path`` if it is a file; else an error naming it, and for a sharded directory how to consolidate it.

    Args:
        path: the checkpoint given.
        what: how the message names it (``"checkpoint"``, ``"train.init_from"``).
    """
    path = Path(path)
    if is_sharded_checkpoint(path):
        raise ValueError(f"{what} {str(path)!r} is a sharded checkpoint directory; consolidate it with "
                         f"`vitlab convert --consolidate {path} OUT.pt` and pass OUT.pt")
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {str(path)!r}")
    return path


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint file with ``weights_only=True``; a missing file (or a sharded directory) is an error naming it."""
    path = require_file(path)
    ckpt = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise ValueError(f"{str(path)!r} is not a vitlab checkpoint (a dict with a 'model' state_dict)")
    return ckpt


def _is_state_dict(obj) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(isinstance(v, torch.Tensor) for v in obj.values())


def load_state_dict_file(path: str | Path) -> StateDict:
    """Tensors of a ``.safetensors``, ``.pt``/``.pth``/``.bin`` file, read offline and without pickled code.

    A file holding ``{"model": state_dict}`` or ``{"state_dict": state_dict}`` (a training checkpoint)
    gives that inner state dict.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {str(path)!r}")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError as exc:
            raise ImportError(f"reading {path.name} needs the safetensors package (pip install safetensors)") from exc
        return dict(load_file(str(path), device="cpu"))
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if _is_state_dict(obj):
        return dict(obj)
    if isinstance(obj, Mapping):
        for key in ("model", "state_dict"):
            if _is_state_dict(obj.get(key)):
                return dict(obj[key])
    raise ValueError(
        f"{str(path)!r} holds no state dict (a mapping of names to tensors, or one under 'model' or "
        f"'state_dict'); top-level keys: {list(obj)[:10] if isinstance(obj, Mapping) else type(obj).__name__}"
    )


class StateDictMismatchError(ValueError):
    """A state dict does not fit the architecture; the message lists every offending key."""


def check_state_dict(given: Mapping[str, torch.Tensor], expected: Mapping[str, Any], what: str,
                     target: str = "the architecture") -> None:
    """Raise :class:`StateDictMismatchError` unless ``given`` has exactly ``expected``'s keys and shapes.

    Args:
        given: the checkpoint's tensors.
        expected: tensors (or anything with ``.shape``) of the architecture, in the checkpoint's names.
        what: the checkpoint, for the message (``"official DINOv3"``, a path).
        target: what it was checked against, for the message.
    """
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    mismatched = [f"{k}: checkpoint {tuple(given[k].shape)} vs model {tuple(expected[k].shape)}"
                  for k in sorted(set(given) & set(expected)) if tuple(given[k].shape) != tuple(expected[k].shape)]
    if not (missing or unexpected or mismatched):
        return
    lines = [f"{what} checkpoint does not match {target}:"]
    for title, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", mismatched)):
        if items:
            lines.append(f"  {title} ({len(items)}): " + ", ".join(items))
    raise StateDictMismatchError("\n".join(lines))


def load_model_state(model: nn.Module, state: Mapping[str, torch.Tensor], what: str = "the") -> None:
    """``load_state_dict(strict=True)`` after :func:`check_state_dict`, so a mismatch names every key."""
    check_state_dict(state, model.state_dict(), what, target="the configured model")
    model.load_state_dict(state, strict=True)


def student_weights(task_state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A DINOv3 run's student backbone from its checkpoint's ``task`` state: the ``student.*`` tensors, in the
    network's names (empty for a run without a student); the checkpoint's ``model`` is the EMA teacher."""
    return {k[len("student."):]: v for k, v in task_state.items() if k.startswith("student.")}


def build_model_from_checkpoint(path: str | Path, *, init: bool = False, **model_overrides: Any) -> tuple[nn.Module, Any]:
    """Rebuild ``config.model`` from a checkpoint, load its weights, and return (model, config).

    Args:
        path: a vitlab checkpoint (training output or converted weights).
        init: skip the weights and return the run's random initialisation instead: the model is built
            after seeding with the run's ``train.seed``, as the trainer builds it first thing (the
            baseline a pretraining is compared with).
        **model_overrides: constructor arguments replacing the config's (e.g. ``num_classes=0``);
            head parameters that then have no place are dropped.
    """
    ckpt = load_checkpoint(path)
    if "config" not in ckpt:
        raise ValueError(f"{str(path)!r} holds no 'config' YAML; cannot rebuild its model")
    cfg = typed_sections(OmegaConf.create(ckpt["config"]))
    if init:
        seed_everything(OmegaConf.select(cfg, "train.seed", default=0))
        return instantiate(cfg.model, **model_overrides), cfg
    model = instantiate(cfg.model, **model_overrides)
    state = ckpt["model"]
    if model_overrides.get("num_classes", None) == 0:
        state = {k: v for k, v in state.items() if not k.startswith("head.")}
    load_model_state(model, state, repr(str(path)))
    return model, cfg
