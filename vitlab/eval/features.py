"""Frozen features of a model over a dataset, for k-NN and linear-probe evaluation.

Axis legend: N samples, D feature width.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from vitlab.models import pool_features
from vitlab.eval.accuracy import eval_mode

__all__ = ["extract_features", "readout_features"]


def readout_features(model: nn.Module, images: torch.Tensor, readout: str | None = None) -> torch.Tensor:
    """One global embedding per image: [B, C, H, W] -> [B, D].

    Args:
        readout: ``cls``, ``gap``, ``cls+gap``, ``registers`` (parameter-free) or ``register_concat`` / None (the model's
            own readout, its neck included); ``pixels``: the images themselves, flattened (the raw-pixel
            baseline; the model is not run).
    """
    if readout == "pixels":
        return images.flatten(1)
    features = model.forward_features(images)
    if readout is None or readout == getattr(getattr(model, "readout", None), "readout", None):
        return model.readout(features)
    if readout == "register_concat":
        raise ValueError("readout='register_concat' needs a model built with that readout (it has a trained neck)")
    return pool_features(features, readout)


@torch.no_grad()
def extract_features(model: nn.Module | None, loader: Iterable, *, readout: str | None = None,
                     device: torch.device | str | None = None, autocast_dtype: torch.dtype | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Features [N, D] (float32, on CPU) and labels [N] of every (image, label) batch of ``loader``.

    The model is put in eval mode for the pass and restored afterwards.
    """
    if model is None and readout != "pixels":
        raise ValueError(f"readout={readout!r} needs a model (only 'pixels' runs without one)")
    if device is None:
        device = next(model.parameters()).device if model is not None else "cpu"
    device = torch.device(device)
    feats, labels = [], []
    with eval_mode(model):
        for images, targets in loader:
            images = images.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                out = readout_features(model, images, readout)
            feats.append(out.float().cpu())
            labels.append(torch.as_tensor(targets).cpu())
    return torch.cat(feats), torch.cat(labels).long()
