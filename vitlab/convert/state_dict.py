"""Reading checkpoints offline and checking them key by key, so a conversion never loads half a model
(the readers and the check live in :mod:`vitlab.weights`; re-exported here).

Every converter compares the checkpoint against the keys and shapes the target architecture needs,
in the checkpoint's own names, and raises :class:`StateDictMismatchError` listing every missing,
unexpected and mis-shaped tensor (no ``strict=False``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from vitlab.weights import StateDictMismatchError, check_state_dict, load_state_dict_file

__all__ = ["StateDict", "StateDictMismatchError", "as_state_dict", "check_state_dict", "load_state_dict_file"]

StateDict = dict[str, torch.Tensor]  # what every converter reads and returns


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
