"""Gated linear attention in chunked form (Yang et al. 2024, "Gated Linear Attention Transformers with
Hardware-Efficient Training", section 4), in pure PyTorch. The recurrence, per head:

    S[t] = diag(exp(g[t])) S[t-1] + k[t]^T v[t]        (S: [dk, dv] state, g <= 0 log forget gates)
    o[t] = scale * q[t] S[t]

is evaluated a chunk of ``c`` tokens at a time: with ``G`` the cumulative log gate from the chunk's start,

- inside a chunk, ``o[t] += sum_{s<=t} (sum_i q[t,i] k[s,i] exp(G[t,i] - G[s,i])) v[s]``: the decayed scores
  (:func:`gla_scores`, a ``[c, c]`` matrix per chunk, then a matrix product with ``v``);
- between chunks, ``o[t] += (q[t] * exp(G[t])) S_in``, where ``S_in``, the state the earlier chunks leave,
  follows ``S_j = exp(G_last) S_{j-1} + (k * exp(G_last - G))^T v`` over the chunks
  (:func:`~vitlab.mixers.linear_scan.linear_scan`).

Every exponent is a difference ``G[t] - G[s]`` with ``s <= t``, so ``<= 0``: no overflow whatever the gates.
The scores are formed in float32 by the paper's secondary chunking (:class:`_SubChunks`): between sub-chunks of
``_SUB`` steps, a matrix product of ``q`` and ``k`` each decayed to the earlier sub-chunk's last step (both
exponents ``<= 0``); within a sub-chunk, pairwise (a ``[sub, sub, dk]`` product), where forming the whole chunk
pairwise (``[c, c, dk]``) took most of the L hybrid's CPU step. It equals ``fla.ops.gla.naive_recurrent_gla``
(tested to 1e-5 in fp32) and the pairwise form.

FLOPs (:func:`chunk_gla_flop_count`), two per multiply-add of the chunked algorithm as it runs on ``L``
padded to whole chunks: the scores (``c^2 dk`` per chunk, the chunk's ``q k^T`` as one product, the paper's
count; the sub-chunked form runs ``c^2 dk`` between sub-chunks, zeros above the diagonal included, and
``c sub dk`` within; a custom op with a registered formula, since ``FlopCounterMode`` sees no matrix product
in it), ``scores @ v`` (``c^2 dv``), the chunk states (``c dk dv`` per chunk but the last), their recurrence
(``dk dv`` per chunk but the last) and the inter-chunk readout (``c dk dv`` per chunk but the first). Backward:
2x, but 1x for the recurrence.

Axis legend: B batch, H heads, L tokens, n chunks, c chunk length, dk key/query head dim, dv value head dim.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import register_flop_formula

from vitlab.mixers.linear_scan import linear_scan

__all__ = ["chunk_gla", "chunk_gla_flop_count", "gla_scores"]


_SUB = 8  # sub-chunk length of the scores (the GLA paper's secondary chunking; fla's chunk_gla: 16 in 64)


def _decay(G: torch.Tensor) -> torch.Tensor:
    """``exp(G[t] - G[s])`` for ``s <= t``, else 0: [..., c(t), c(s), dk] from cumulative gates ``G`` [..., c, dk]."""
    c = G.shape[-2]
    causal = torch.ones(c, c, dtype=torch.bool, device=G.device).tril()
    diff = G.unsqueeze(-2) - G.unsqueeze(-3)
    return diff.masked_fill(~causal.unsqueeze(-1), float("-inf")).exp()  # masked before exp: no inf * 0


def _float(*tensors: torch.Tensor) -> list[torch.Tensor]:
    dtype = torch.promote_types(tensors[0].dtype, torch.float32)
    return [t.to(dtype) for t in tensors]


class _SubChunks:
    """A chunk's ``q``, ``k``, ``G`` [..., c, dk] cut into ``m`` sub-chunks of ``sub`` steps (padded at the end: zero
    ``q`` and ``k``, ``G`` held at its last value, so padded scores are 0), and the two factors of the scores
    between sub-chunks. For ``s`` in sub-chunk ``j`` and ``t`` after it, with ``e_j`` the cumulative gate at ``j``'s
    last step, ``exp(G[t] - G[s]) = exp(G[t] - e_j) exp(e_j - G[s])``, both exponents ``<= 0``:

        to_row [..., m(j), c(t), dk] = exp(G[t] - e_j) where t is after sub-chunk j, else 0
        from_col [..., m(j), sub(s), dk] = exp(e_j - G[s]) for s in sub-chunk j

    so those scores are one matrix product per sub-chunk, ``(q to_row) (k from_col)^T``; the diagonal blocks (``s``
    and ``t`` in one sub-chunk) are formed pairwise, ``[sub, sub, dk]`` per sub-chunk, as the whole chunk was
    before."""

    def __init__(self, q: torch.Tensor, k: torch.Tensor, G: torch.Tensor):
        self.c = c = q.shape[-2]
        self.sub = sub = min(_SUB, c)
        self.m = m = -(-c // sub)
        pad = m * sub - c
        if pad:
            q, k = F.pad(q, (0, 0, 0, pad)), F.pad(k, (0, 0, 0, pad))
            G = torch.cat((G, G[..., -1:, :].expand(*G.shape[:-2], pad, G.shape[-1])), dim=-2)
        self.q = q
        self.qs, self.ks, self.Gs = (x.unflatten(-2, (m, sub)) for x in (q, k, G))  # [..., m, sub, dk]
        e = self.Gs[..., -1, :]  # [..., m, dk]
        self.from_col = (e.unsqueeze(-2) - self.Gs).exp()
        after = torch.arange(m * sub, device=q.device) // sub > torch.arange(m, device=q.device).unsqueeze(-1)
        diff = G.unsqueeze(-3) - e.unsqueeze(-2)  # [..., m, c, dk]
        self.to_row = diff.masked_fill(~after.unsqueeze(-1), float("-inf")).exp()
        self.decay = _decay(self.Gs)  # [..., m, sub, sub, dk]

    def blocks(self, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``scores`` [..., m * sub, m * sub] as its columns of each sub-chunk [..., m(j), c(t), sub(s)] and a view of
        its diagonal blocks [..., sub(t), sub(s), m]."""
        m, sub = self.m, self.sub
        columns = scores.unflatten(-1, (m, sub)).movedim(-2, -3)
        diagonal = scores.unflatten(-1, (m, sub)).unflatten(-3, (m, sub)).diagonal(dim1=-4, dim2=-2)
        return columns, diagonal


@torch.library.custom_op("vitlab::gla_scores", mutates_args=())
def _gla_scores_op(q: torch.Tensor, k: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
    x = _SubChunks(*_float(q, k, G))
    between = (x.q.unsqueeze(-3) * x.to_row) @ (x.ks * x.from_col).mT  # [..., m(j), c(t), sub(s)]
    scores = between.movedim(-3, -2).flatten(-2)  # [..., c(t), c(s)], zero on and above the diagonal blocks
    within = (x.qs.unsqueeze(-2) * x.ks.unsqueeze(-3) * x.decay).sum(-1)  # [..., m, sub(t), sub(s)]
    x.blocks(scores)[1].copy_(within.movedim(-3, -1))
    return scores[..., :x.c, :x.c].contiguous()


@_gla_scores_op.register_fake
def _(q, k, G):
    return q.new_empty((*q.shape[:-1], q.shape[-2]), dtype=torch.promote_types(q.dtype, torch.float32))


@torch.library.custom_op("vitlab::gla_scores_backward", mutates_args=())
def _gla_scores_backward_op(grad: torch.Tensor, q: torch.Tensor, k: torch.Tensor,
                            G: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    dtypes = (q.dtype, k.dtype, G.dtype)
    grad, q, k, G = _float(grad, q, k, G)
    x = _SubChunks(q, k, G)
    pad = x.m * x.sub - x.c
    columns, diagonal = x.blocks(F.pad(grad, (0, pad, 0, pad)))
    # between sub-chunks: the two factors' matrix products, transposed
    dq = (x.to_row * (columns @ (x.ks * x.from_col))).sum(-3)  # [..., c, dk]
    dk = x.from_col * (columns.mT @ (x.q.unsqueeze(-3) * x.to_row))  # [..., m, sub, dk]
    # within: as the whole chunk's pairwise form
    weighted = diagonal.movedim(-1, -3).unsqueeze(-1) * x.decay  # [..., m, t, s, dk]
    dq = dq + (weighted * x.ks.unsqueeze(-3)).sum(-2).flatten(-3, -2)
    dk = (dk + (weighted * x.qs.unsqueeze(-2)).sum(-3)).flatten(-3, -2)
    dq, dk = dq[..., :x.c, :], dk[..., :x.c, :]
    # G[t] enters every score of row t with + and of column t with -: q*dq and k*dk sum exactly those
    dG = q * dq - k * dk
    return tuple(t.to(dtype).contiguous() for t, dtype in zip((dq, dk, dG), dtypes))  # as the fake promises


@_gla_scores_backward_op.register_fake
def _(grad, q, k, G):
    return q.new_empty(q.shape), k.new_empty(k.shape), G.new_empty(G.shape)


def _setup_context(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _backward(ctx, grad):
    return _gla_scores_backward_op(grad, *ctx.saved_tensors)


_gla_scores_op.register_autograd(_backward, setup_context=_setup_context)


@register_flop_formula(torch.ops.vitlab.gla_scores)
def _scores_flops(q_shape, k_shape, G_shape, *, out_shape=None, **kwargs) -> int:
    return 2 * math.prod(out_shape) * q_shape[-1]


@register_flop_formula(torch.ops.vitlab.gla_scores_backward)
def _scores_backward_flops(grad_shape, q_shape, k_shape, G_shape, *, out_shape=None, **kwargs) -> int:
    return 2 * 2 * math.prod(grad_shape) * q_shape[-1]  # dq and dk


def gla_scores(q: torch.Tensor, k: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
    """Decayed causal scores ``A[t, s] = sum_i q[t, i] k[s, i] exp(G[t, i] - G[s, i])`` for ``s <= t``, else 0.

    Args:
        q, k: [..., c, dk].
        G: cumulative log gates [..., c, dk], non-increasing along c.

    Returns:
        A [..., c, c] in float32 (float64 for float64 inputs).
    """
    return _gla_scores_op(q, k, G)


def chunk_gla(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor, *, scale: float | None = None,
              chunk_size: int = 32) -> torch.Tensor:
    """Causal gated linear attention, ``o[t] = scale * q[t] S[t]`` (module docstring), chunk by chunk.

    Args:
        q, k: queries and keys [B, H, L, dk].
        v: values [B, H, L, dv].
        g: log forget gates [B, H, L, dk], ``<= 0``.
        scale: query scale; None: ``dk ** -0.5`` (fla's default).
        chunk_size: tokens per chunk (the last chunk is zero-padded; ``min(chunk_size, L)`` is used).

    Returns:
        o [B, H, L, dv] in ``v``'s dtype.
    """
    B, H, L, dk = q.shape
    if k.shape != q.shape or g.shape != q.shape or v.shape[:3] != q.shape[:3]:
        raise ValueError(f"chunk_gla needs q, k, g [B, H, L, dk] and v [B, H, L, dv], got q {tuple(q.shape)}, "
                         f"k {tuple(k.shape)}, v {tuple(v.shape)}, g {tuple(g.shape)}")
    if chunk_size < 1:
        raise ValueError(f"chunk_gla chunk_size must be >= 1, got {chunk_size}")
    c = min(chunk_size, L)
    n = -(-L // c)
    pad = n * c - L  # padded tokens come last (no gate, no key, no value): no real output changes
    q, k, v, g = (F.pad(t, (0, 0, 0, pad)).unflatten(2, (n, c)) for t in (q, k, v, g))  # [B, H, n, c, d]
    q = q * (dk**-0.5 if scale is None else scale)
    G = g.to(torch.promote_types(g.dtype, torch.float32)).cumsum(3)  # [B, H, n, c, dk] log decay from the chunk's start through t
    scores = gla_scores(q, k, G)  # [B, H, n, c, c]
    o = scores @ v.to(scores.dtype)  # [B, H, n, c, dv] within chunks
    if n > 1:
        last = G[..., -1:, :]  # [B, H, n, 1, dk] each chunk's whole decay
        k_to_end = k[:, :, :-1] * (last[:, :, :-1] - G[:, :, :-1]).exp()  # decayed to the end of its chunk
        U = k_to_end.transpose(-1, -2) @ v[:, :, :-1].to(k_to_end.dtype)  # [B, H, n-1, dk, dv]
        # S_j = exp(G_last_j) S_{j-1} + U_j: the state after chunk j, which chunk j+1 reads
        S = linear_scan(last[:, :, :-1].transpose(-1, -2).flatten(0, 1), U.flatten(0, 1)).unflatten(0, (B, H))
        inter = (q[:, :, 1:] * G[:, :, 1:].exp()) @ S  # [B, H, n-1, c, dv]
        o = torch.cat((o[:, :, :1], o[:, :, 1:] + inter), dim=2)
    return o.flatten(2, 3)[:, :, :L].to(v.dtype)


def chunk_gla_flop_count(batch: int, heads: int, length: int, dk: int, dv: int, chunk_size: int = 32) -> tuple[int, int]:
    """``(forward, backward)`` FLOPs of :func:`chunk_gla` (module docstring) for ``batch`` x ``heads`` sequences."""
    c = min(chunk_size, length)
    n = -(-length // c)
    matmul = n * c * c * (dk + dv) + 2 * (n - 1) * c * dk * dv  # scores, scores @ v, states, inter-chunk readout
    recurrence = (n - 1) * dk * dv
    per_sequence = 2 * (matmul + recurrence), 2 * (2 * matmul + recurrence)
    return batch * heads * per_sequence[0], batch * heads * per_sequence[1]
