"""Reading checkpoints offline and checking them key by key, so a conversion never loads half a model.

Every converter compares the checkpoint against the keys and shapes the target architecture needs,
in the checkpoint's own names, and raises :class:`StateDictMismatchError` listing every missing,
unexpected and mis-shaped tensor (no ``strict=False``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from vitlab.engine.checkpoint import StateDictMismatchError, check_state_dict

__all__ = ["StateDictMismatchError", "as_state_dict", "check_state_dict", "load_state_dict_file"]

StateDict = dict[str, torch.Tensor]


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


def as_state_dict(source) -> StateDict:
    """A state dict from a state dict, a module, or a checkpoint path."""
    if isinstance(source, nn.Module):
        return dict(source.state_dict())
    if isinstance(source, (str, Path)):
        return load_state_dict_file(source)
    if isinstance(source, Mapping):
        bad = [k for k, v in source.items() if not isinstance(v, torch.Tensor)]
        if bad:
            raise TypeError(f"state dict values must be tensors; these are not: {bad[:10]}")
        return dict(source)
    raise TypeError(f"expected a state dict, a module or a checkpoint path, got {type(source).__name__}")
