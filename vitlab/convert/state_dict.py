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

__all__ = ["StateDictMismatchError", "as_state_dict", "check_state_dict", "load_state_dict_file", "load_strict"]

StateDict = dict[str, torch.Tensor]


class StateDictMismatchError(ValueError):
    """A checkpoint does not fit the architecture; the message lists every offending key."""


def _shape(t) -> tuple[int, ...]:
    return tuple(t.shape)


def check_state_dict(given: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor], what: str) -> None:
    """Raise :class:`StateDictMismatchError` unless ``given`` has exactly ``expected``'s keys and shapes.

    Args:
        given: the checkpoint's tensors.
        expected: tensors (or anything with ``.shape``) of the architecture, in the checkpoint's names.
        what: the format, for the message (``"official DINOv3"``).
    """
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    mismatched = [
        f"{k}: checkpoint {_shape(given[k])} vs model {_shape(expected[k])}"
        for k in sorted(set(given) & set(expected))
        if _shape(given[k]) != _shape(expected[k])
    ]
    if not (missing or unexpected or mismatched):
        return
    lines = [f"{what} checkpoint does not match the architecture:"]
    for title, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", mismatched)):
        if items:
            lines.append(f"  {title} ({len(items)}): " + ", ".join(items))
    raise StateDictMismatchError("\n".join(lines))


def load_strict(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> nn.Module:
    """Check ``state_dict`` against ``model``'s own keys and shapes, then load it."""
    check_state_dict(state_dict, model.state_dict(), "converted vitlab")
    model.load_state_dict(state_dict, strict=True)
    return model


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
