"""Stochastic depth (Huang et al. 2016, "Deep Networks with Stochastic Depth"): drop a residual
branch for whole samples during training, scaling the kept ones by 1/(1-p).

Blocks apply it fused with the residual add (:class:`vitlab.layers.ResidualBranch`); this is the
branch-only form, for parts outside a block. Both draw the keep mask with one function,
:func:`vitlab.kernels.residual.drop_path_scale`, so they drop the same samples for one generator state.
"""

from __future__ import annotations

import torch

from vitlab.kernels.residual import drop_path_scale

__all__ = ["drop_path"]


def drop_path(x: torch.Tensor, drop_prob: float, training: bool,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero the branch ``x`` [B, ...] per sample with probability ``drop_prob``, scale the rest by 1/(1-p).

    Args:
        x: branch output [B, ...].
        drop_prob: probability p in [0, 1) of dropping a sample.
        training: drop only in training; otherwise ``x`` is returned as is.
        generator: torch generator for the keep mask (on ``x.device``).

    Returns:
        [B, ...] in ``x.dtype``; a dropped sample is exactly zero (even where ``x`` is inf or nan).
    """
    scale = drop_path_scale(x.shape[0], drop_prob, training, x.device, generator)
    if scale is None:
        return x
    s = scale.view((-1,) + (1,) * (x.ndim - 1))  # [B, 1, ...] float32
    return torch.where(s != 0, x.float() * s, 0.0).to(x.dtype)
