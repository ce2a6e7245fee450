"""Fused rotary position embedding for queries and keys (Su et al. 2021, RoFormer), in the
rotate-half form DINOv3 uses for its 2D axial RoPE (Siméoni et al. 2025):

    x' = x * cos + rotate_half(x) * sin,   rotate_half([x1, x2]) = [-x2, x1]

Only the ``N`` tokens ``[num_prefix_tokens, num_prefix_tokens + N)`` are rotated (the patch
tokens); tokens before (CLS, registers) and after (registers, padding) pass through unchanged.
Eager torch slices, rotates and concatenates q and k separately (about six passes over each);
the kernel reads q and k once, in place even when they are strided views of a fused qkv
projection, and loads each cos/sin tile once for both.

The backward is the transposed rotation, ``g * cos + rotate_half^T(g * sin)``. ``cos`` and
``sin`` are treated as constants: no gradient flows to them (RoPE tables are not learned).

Axis legend: B batch, H heads, T tokens, d head_dim, N rotated tokens.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from vitlab.kernels._triton import cdiv, lazy_jit, next_power_of_2, num_warps
from vitlab.kernels.dispatch import resolve_backend

if TYPE_CHECKING:  # bound to the real module at the first launch, see vitlab.kernels._triton
    import triton.language as tl  # noqa: TC004 - kernels see it only when jitted

__all__ = ["rope_2d", "rope_2d_op", "rope_2d_reference"]


def rope_2d_reference(
    q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, num_prefix_tokens: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain torch RoPE on tokens ``[P, P+N)`` of q and k [B, H, T, d], in float32.

    One expression for every token: the tables are extended with the identity rotation (cos 1, sin 0) for
    the tokens left unchanged, which returns them exactly (``x * 1 + y * 0 == x``), so there is no slicing
    and concatenating of token ranges; ``rotate_half(x) * sin`` is ``roll(x, d/2) * [-sin_1, sin_2]``.
    """
    P, N, T, half = num_prefix_tokens, cos.shape[0], q.shape[2], q.shape[3] // 2
    cos, sin = cos.float(), sin.float()
    if (P, N) != (0, T):
        cos = torch.nn.functional.pad(cos, (0, 0, P, T - P - N), value=1.0)  # [T, d]
        sin = torch.nn.functional.pad(sin, (0, 0, P, T - P - N), value=0.0)
    signed_sin = torch.cat((-sin[:, :half], sin[:, half:]), dim=-1)  # rotate_half([x1, x2]) = [-x2, x1]

    def rotate(x):
        x32 = x.float()
        return (x32 * cos + x32.roll(half, dims=-1) * signed_sin).to(x.dtype)

    return rotate(q), rotate(k)


@lazy_jit
def _rotate_heads(
    x_ptr, out_ptr, b, h, t64, j, s_b, s_h, s_t, s_d, half, mask, keep, out_off, cos1, cos2, sin1, sin2,
    BACKWARD: tl.constexpr,
):
    # one tensor's [BLOCK_T, d] tile, read in place through its strides and written contiguous
    base = x_ptr + b * s_b + h * s_h + t64 * s_t
    x1 = tl.load(base + j[None, :] * s_d, mask=mask, other=0.0)
    x2 = tl.load(base + (j[None, :] + half) * s_d, mask=mask, other=0.0)
    a1, a2 = x1.to(tl.float32), x2.to(tl.float32)
    if BACKWARD:  # transpose of the rotation: rotate_half^T([y1, y2]) = [y2, -y1]
        o1 = a1 * cos1 + a2 * sin2
        o2 = a2 * cos2 - a1 * sin1
    else:
        o1 = a1 * cos1 - a2 * sin1
        o2 = a2 * cos2 + a1 * sin2
    o1 = tl.where(keep, o1.to(out_ptr.dtype.element_ty), x1)
    o2 = tl.where(keep, o2.to(out_ptr.dtype.element_ty), x2)
    tl.store(out_ptr + out_off, o1, mask=mask)
    tl.store(out_ptr + out_off + half, o2, mask=mask)


@lazy_jit
def _rope_kernel(
    q_ptr, k_ptr, cos_ptr, sin_ptr, q_out_ptr, k_out_ptr,
    n_heads, n_tokens, n_rot, prefix, half,
    sq_b, sq_h, sq_t, sq_d, sk_b, sk_h, sk_t, sk_d,
    BACKWARD: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr,
):
    bh = tl.program_id(1)
    b = (bh // n_heads).to(tl.int64)
    h = (bh % n_heads).to(tl.int64)
    t = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    j = tl.arange(0, BLOCK_D)  # index within a half of the head
    mask = (t < n_tokens)[:, None] & (j < half)[None, :]
    rotated = (t >= prefix) & (t < prefix + n_rot)
    tab_mask = mask & rotated[:, None]
    tab = (t - prefix)[:, None] * (2 * half) + j[None, :]
    # cos = 1, sin = 0 off the rotated range; the where() in _rotate_heads keeps those tokens bit-exact
    cos1 = tl.load(cos_ptr + tab, mask=tab_mask, other=1.0).to(tl.float32)
    cos2 = tl.load(cos_ptr + tab + half, mask=tab_mask, other=1.0).to(tl.float32)
    sin1 = tl.load(sin_ptr + tab, mask=tab_mask, other=0.0).to(tl.float32)
    sin2 = tl.load(sin_ptr + tab + half, mask=tab_mask, other=0.0).to(tl.float32)
    keep = rotated[:, None]
    t64 = t.to(tl.int64)[:, None]
    out_off = bh.to(tl.int64) * n_tokens * (2 * half) + t64 * (2 * half) + j[None, :]
    # queries, then keys: same tables, same token range
    _rotate_heads(q_ptr, q_out_ptr, b, h, t64, j, sq_b, sq_h, sq_t, sq_d, half, mask, keep, out_off,
                  cos1, cos2, sin1, sin2, BACKWARD)
    _rotate_heads(k_ptr, k_out_ptr, b, h, t64, j, sk_b, sk_h, sk_t, sk_d, half, mask, keep, out_off,
                  cos1, cos2, sin1, sin2, BACKWARD)


def _launch(q, k, cos, sin, prefix: int, backward: bool):
    B, H, T, d = q.shape
    half = d // 2
    q_out = torch.empty((B, H, T, d), device=q.device, dtype=q.dtype)
    k_out = torch.empty((B, H, T, d), device=k.device, dtype=k.dtype)
    if q_out.numel() == 0:
        return q_out, k_out
    BLOCK_D = next_power_of_2(half)
    BLOCK_T = min(max(1, 2048 // BLOCK_D), next_power_of_2(T))
    grid = (cdiv(T, BLOCK_T), B * H)
    _rope_kernel[grid](
        q, k, cos, sin, q_out, k_out, H, T, cos.shape[0], prefix, half,
        *q.stride(), *k.stride(), BACKWARD=backward, BLOCK_T=BLOCK_T, BLOCK_D=BLOCK_D,
        num_warps=num_warps(2 * BLOCK_T * BLOCK_D),  # both halves of a head live at once
    )
    return q_out, k_out


# The Triton path as a torch.library custom op, so torch.compile sees each launch as one graph node;
# the backward is the same op with the transposed rotation. ``cos``/``sin`` get no gradient.
@torch.library.custom_op("vitlab::rope_2d", mutates_args=())
def rope_2d_op(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
               prefix: int, transpose: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    return _launch(q, k, cos.contiguous(), sin.contiguous(), prefix, backward=transpose)


@rope_2d_op.register_fake
def _(q, k, cos, sin, prefix, transpose=False):
    return q.new_empty(q.shape), k.new_empty(k.shape)


def _rope_setup_context(ctx, inputs, output):
    q, k, cos, sin, prefix, transpose = inputs
    ctx.save_for_backward(cos, sin)
    ctx.prefix, ctx.transpose = prefix, transpose


def _rope_autograd(ctx, grad_q, grad_k):
    cos, sin = ctx.saved_tensors
    grad_q = grad_q if grad_q is not None else torch.zeros_like(grad_k)
    grad_k = grad_k if grad_k is not None else torch.zeros_like(grad_q)
    dq, dk = rope_2d_op(grad_q, grad_k, cos, sin, ctx.prefix, not ctx.transpose)
    return dq, dk, None, None, None, None


rope_2d_op.register_autograd(_rope_autograd, setup_context=_rope_setup_context)


def rope_2d(
    q: torch.Tensor,
    k: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    num_prefix_tokens: int = 0,
    backend: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate tokens ``[num_prefix_tokens, num_prefix_tokens + N)`` of q and k in one launch.

    Args:
        q: queries [B, H, T, d]; may be a strided view (e.g. from a qkv split).
        k: keys [B, H, T, d], same shape and dtype as ``q``.
        cos: [N, d] cosine table (float32 or the input dtype); constant, gets no gradient.
        sin: [N, d] sine table; constant, gets no gradient.
        num_prefix_tokens: P, tokens before the rotated range (CLS, registers) left unchanged;
            tokens after ``P + N`` (trailing registers, padding) are unchanged too.
        backend: ``"auto" | "triton" | "torch"`` (see :mod:`vitlab.kernels.dispatch`).

    Returns:
        ``(q, k)`` rotated, [B, H, T, d] each (contiguous on the Triton path). Gradients flow
        to ``q`` and ``k``.
    """
    if q.ndim != 4 or q.shape != k.shape:
        raise ValueError(
            f"rope_2d needs q and k of one shape [B, H, T, d], got {tuple(q.shape)} and {tuple(k.shape)}"
        )
    if q.dtype != k.dtype:
        raise TypeError(f"rope_2d needs q and k of one dtype, got {q.dtype} and {k.dtype}")
    T, d = q.shape[2], q.shape[3]
    if d % 2:
        raise ValueError(f"rope_2d needs an even head_dim for rotate-half, got {d}")
    if cos.ndim != 2 or cos.shape != sin.shape or cos.shape[1] != d:
        raise ValueError(
            f"rope_2d needs cos and sin of shape [N, d={d}], got {tuple(cos.shape)} and {tuple(sin.shape)}"
        )
    P, N = num_prefix_tokens, cos.shape[0]
    if P < 0 or P + N > T:
        raise ValueError(f"rope_2d: rotated range [{P}, {P + N}) does not fit in T={T} tokens")
    if resolve_backend(backend, q, k, cos, sin) == "torch":
        return rope_2d_reference(q, k, cos, sin, P)
    return rope_2d_op(q, k, cos, sin, P)
