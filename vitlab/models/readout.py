"""Readouts: how a network turns its tokens into one global embedding (ViT-5's readouts).

- ``cls``: the CLS token after the final norm.
- ``gap``: the mean of the (normed) patch tokens; CLS and registers are left out.
- ``register_concat``: a shared bias-free neck ``Linear(D, D // r)`` compresses each register token,
  and the results are concatenated: ``[B, R * D // r]``.
- ``cls+gap`` (evaluation only): CLS and patch mean concatenated, as DINOv2/v3 linear probes do.
- ``registers`` (evaluation only): the normed register tokens concatenated, ``[B, R * D]``: what the
  registers carry in a model pretrained through another readout (``register_concat`` without a neck).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["Readout", "READOUTS", "pool_features"]

READOUTS = ("cls", "gap", "register_concat")


def pool_features(features: dict[str, torch.Tensor], readout: str) -> torch.Tensor:
    """A parameter-free readout of ``forward_features`` output: ``cls``, ``gap``, ``cls+gap`` or ``registers`` -> [B, *]."""
    if readout == "cls":
        if "cls" not in features:
            raise ValueError("readout 'cls' needs a CLS token, but the model has none (class_token=False)")
        return features["cls"]
    if readout == "gap":
        return features["patches"].flatten(1, 2).mean(dim=1)
    if readout == "cls+gap":
        return torch.cat((pool_features(features, "cls"), pool_features(features, "gap")), dim=-1)
    if readout == "registers":
        if features["registers"].shape[1] == 0:
            raise ValueError("readout 'registers' needs register tokens, but the model has none (num_registers=0)")
        return features["registers"].flatten(1)
    raise ValueError(f"readout must be 'cls', 'gap', 'cls+gap' or 'registers' here, got {readout!r}")


class Readout(nn.Module):
    """The network's readout; ``out_dim`` is the width of what it returns."""

    def __init__(self, readout: str, dim: int, *, num_cls: int, num_registers: int,
                 neck_compression_ratio: int | None = None, device=None, dtype=None):
        super().__init__()
        if readout not in READOUTS:
            raise ValueError(f"readout must be one of {READOUTS}, got {readout!r}")
        if readout == "cls" and num_cls == 0:
            raise ValueError("readout='cls' needs a CLS token, but class_token=False")
        self.readout = readout
        self.neck = None
        self.out_dim = dim
        if readout == "register_concat":
            if num_registers == 0:
                raise ValueError("readout='register_concat' needs registers, but num_registers=0")
            r = neck_compression_ratio
            if not isinstance(r, int) or r <= 0 or dim % r:
                raise ValueError(
                    f"readout='register_concat' needs neck_compression_ratio, a positive integer dividing "
                    f"dim={dim}; got {r!r}"
                )
            self.neck = nn.Linear(dim, dim // r, bias=False, device=device, dtype=dtype)
            self.out_dim = num_registers * (dim // r)

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.neck is None:
            return pool_features(features, self.readout)
        return self.neck(features["registers"]).flatten(1)  # [B, R * D/r]

    def flop_count(self, num_registers: int) -> int:
        return 0 if self.neck is None else 2 * num_registers * self.neck.in_features * self.neck.out_features
