"""Mamba's selective scan (Gu & Dao 2023, "Mamba: Linear-Time Sequence Modeling with Selective State
Spaces"), streamed over time: the discretised decays and inputs ``exp(delta A)`` and ``delta B u``
([L, B, K, Dk, N], ``N`` times the size of the input) are formed a tile of steps at a time and dropped
after it, never for the whole sequence, as mamba_ssm's CUDA kernel forms them in on-chip memory. Per tile:

    a, b = exp(delta A), delta u B          # [c, B, K, Dk, N]
    h[t] = a[t] h[t-1] + b[t]              # step by step, from the state entering the tile
    y[t] = C[t] . h[t]                     # batched matrix product

The forward keeps only the state entering each tile; the backward walks the tiles from the last,
recomputes each one's states from its entering state, runs the adjoint recurrence
``g[t] = dh[t] + a[t+1] g[t+1]`` back through it, and reduces every gradient to its input's shape
before the next. The tile length keeps a tile tensor near ``_TILE_ELEMENTS`` (16 MiB in fp32): on the S hybrid's
global crops of ``experiments/ablate_mixers.py`` forward and backward took 0.64 s, against 0.77 s with 4x smaller
tiles and 1.44 s with 4x larger (2 CPU cores, fp32 matmul 176 GFLOP/s).

This is :func:`~vitlab.mixers.selective_scan.selective_scan`'s one-chunk path (the CPU default), the same
function as its chunked parallel scan (tested against mambapy's). Its forward and its backward are
``torch.library`` custom ops, so ``torch.compile`` sees one graph node each and ``FlopCounterMode`` counts them by the formulas registered
here: forward ``4 L D N`` (the recurrence's and the readout's multiply-adds), backward ``6 L D N`` (the
adjoint recurrence 1x, the readout's two products 2x), as
:func:`~vitlab.mixers.selective_scan.selective_scan_flop_count` says.

Axis legend: L steps, B batch, K groups (scan directions), Dk channels per group, N state size,
c steps per tile.
"""

from __future__ import annotations

import math

import torch
from torch.utils.flop_counter import register_flop_formula

__all__ = ["streamed_selective_scan"]

_TILE_ELEMENTS = 1 << 22  # elements of one [c, B, K, Dk, N] tile tensor (16 MiB in fp32)


def _discretise(u: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, Bm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``exp(dt A)`` and ``dt u B`` [c, B, K, Dk, N] of a tile: u, dt [c, B, K, Dk], A [K, Dk, N], Bm [c, B, K, N]."""
    return (dt.unsqueeze(-1) * A).exp_(), (dt * u).unsqueeze(-1) * Bm.unsqueeze(-2)


def _states(a: torch.Tensor, b: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """A tile's states ``h[t] = a[t] h[t-1] + b[t]`` from the entering state ``h``, written over ``b``."""
    for t in range(b.shape[0]):
        h = b[t].addcmul_(a[t], h)
    return b


def _contract(v: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """``v [..., I] @ m [..., I, J] -> [..., J]``, as a row vector times a matrix: on CPU several times faster
    than the matrix-vector product ``m.mT @ v`` it equals (a batch of [1, 256] @ [256, 16] against its transpose)."""
    return (v.unsqueeze(-2) @ m).squeeze(-2)


@torch.library.custom_op("vitlab::selective_scan_streamed", mutates_args=())
def _forward(u: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, Bm: torch.Tensor, Cm: torch.Tensor,
             tile: int) -> tuple[torch.Tensor, torch.Tensor]:
    L, N = u.shape[0], A.shape[-1]
    y, entering = torch.empty_like(u), u.new_empty(-(-L // tile), *u.shape[1:], N)
    entering[0].zero_()
    for i, s in enumerate(range(0, L, tile)):
        hs = _states(*_discretise(u[s:s + tile], dt[s:s + tile], A, Bm[s:s + tile]), entering[i])
        y[s:s + tile] = _contract(Cm[s:s + tile], hs.mT)
        if i + 1 < entering.shape[0]:
            entering[i + 1] = hs[-1]
    return y, entering


@_forward.register_fake
def _(u, dt, A, Bm, Cm, tile):
    return torch.empty_like(u), u.new_empty(-(-u.shape[0] // tile), *u.shape[1:], A.shape[-1])


@torch.library.custom_op("vitlab::selective_scan_streamed_backward", mutates_args=())
def _backward_op(dy: torch.Tensor, u: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, Bm: torch.Tensor,
                 Cm: torch.Tensor, entering: torch.Tensor, tile: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                                          torch.Tensor, torch.Tensor]:
    du, ddt, dBm, dCm, dA = (torch.empty_like(x) for x in (u, dt, Bm, Cm, A))
    dA.zero_()
    carry = torch.zeros_like(entering[0])  # a[t+1] g[t+1] across a tile's end: what the next tile sends back
    for i in reversed(range(entering.shape[0])):
        tiled = slice(i * tile, (i + 1) * tile)
        u_, dt_, Bm_, Cm_ = u[tiled], dt[tiled], Bm[tiled], Cm[tiled]
        a, b = _discretise(u_, dt_, A, Bm_)
        hs = _states(a, b, entering[i])  # [c, B, K, Dk, N]
        dCm[tiled] = _contract(dy[tiled], hs)
        g = dy[tiled].unsqueeze(-1) * Cm_.unsqueeze(-2)  # dL/dh[t] through the readout; the adjoint adds the future's share
        g[-1].add_(carry)
        for t in range(g.shape[0] - 2, -1, -1):
            g[t].addcmul_(a[t + 1], g[t + 1])
        carry = a[0] * g[0]
        # the log decay dt A: its gradient g[t] a[t] h[t-1]
        dla = g * a
        dla[0].mul_(entering[i])
        dla[1:].mul_(hs[:-1])
        dA += (dla * dt_.unsqueeze(-1)).sum((0, 1))
        d_dtu = _contract(Bm_, g.mT)  # [c, B, K, Dk]: the gradient of dt u
        dBm[tiled] = _contract(dt_ * u_, g)
        du[tiled] = d_dtu * dt_
        ddt[tiled] = dla.mul_(A).sum(-1) + d_dtu * u_
    return du, ddt, dA, dBm, dCm


@_backward_op.register_fake
def _(dy, u, dt, A, Bm, Cm, entering, tile):
    return tuple(torch.empty_like(x) for x in (u, dt, A, Bm, Cm))


def _setup_context(ctx, inputs, output):
    *tensors, ctx.tile = inputs
    ctx.save_for_backward(*tensors, output[1])
    # the entering states are never differentiated: without this, autograd hands the backward a zero gradient of
    # their full size (one [B, K, Dk, N] state per tile), filled every step
    ctx.set_materialize_grads(False)


def _backward(ctx, dy, _):
    if dy is None:
        return (None,) * 6
    return *_backward_op(dy.contiguous(), *ctx.saved_tensors, ctx.tile), None


_forward.register_autograd(_backward, setup_context=_setup_context)


@register_flop_formula(torch.ops.vitlab.selective_scan_streamed)
def _forward_flops(u_shape, dt_shape, A_shape, *args, out_shape=None, **kwargs) -> int:
    return 4 * math.prod(u_shape) * A_shape[-1]


@register_flop_formula(torch.ops.vitlab.selective_scan_streamed_backward)
def _backward_flops(dy_shape, u_shape, dt_shape, A_shape, *args, out_shape=None, **kwargs) -> int:
    return 6 * math.prod(u_shape) * A_shape[-1]


def streamed_selective_scan(u: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, Bm: torch.Tensor,
                            Cm: torch.Tensor) -> torch.Tensor:
    """``y[t] = C[t] . h[t]``, ``h[t] = exp(dt[t] A) h[t-1] + dt[t] u[t] B[t]`` (no ``D u`` skip), streamed.

    Args:
        u, dt: inputs and step sizes [L, B, K, Dk].
        A: state matrix diagonals [K, Dk, N].
        Bm, Cm: input and output projections [L, B, K, N].

    Returns:
        y [L, B, K, Dk] in float32 (float64 for float64 inputs).
    """
    dtype = torch.promote_types(u.dtype, torch.float32)
    u, dt, A, Bm, Cm = (x.to(dtype).contiguous() for x in (u, dt, A, Bm, Cm))
    tile = max(1, min(u.shape[0], _TILE_ELEMENTS // max(1, u[0].numel() * A.shape[-1])))
    return _forward(u, dt, A, Bm, Cm, tile)[0]
