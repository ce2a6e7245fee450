"""rope_2d: Triton vs the torch reference, forward and backward, on strided qkv views."""

import pytest
import torch
from torch.testing import assert_close

from vitlab.kernels import rope_2d
from vitlab.kernels.rope import rope_2d_reference

# (B, H, T, d, prefix P, rotated N): small odd shapes, then DINOv3-like token layouts
# (CLS + 196 patches; CLS + 4 registers + 256 patches) at one head.
SHAPES = [
    (2, 3, 13, 8, 1, 9),  # CLS first, 3 trailing tokens (registers/padding) untouched
    (1, 2, 27, 16, 0, 27),  # every token rotated
    (2, 1, 11, 8, 4, 0),  # nothing rotated
    (1, 1, 197, 64, 1, 196),
    (1, 1, 261, 64, 5, 256),
    (1, 1, 27, 128, 2, 25),
]


def _qkv(B, H, T, d, requires_grad=True):
    """q, k as the strided views an attention layer gets from one fused projection."""
    qkv = torch.randn(B, T, 3, H, d, requires_grad=requires_grad)
    q, k, _ = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [B, H, T, d], non-contiguous
    return qkv, q, k


def _tables(N, d):
    angles = torch.randn(N, d) * 3
    return angles.cos(), angles.sin()


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_forward_and_backward_match_reference(shape):
    B, H, T, d, P, N = shape
    qkv, q, k = _qkv(B, H, T, d)
    assert not q.is_contiguous()
    cos, sin = _tables(N, d)
    out = rope_2d(q, k, cos, sin, P, backend="triton")
    ref = rope_2d_reference(q, k, cos, sin, P)
    for o, r in zip(out, ref):
        assert_close(o, r, rtol=1e-5, atol=1e-6)
    grads = [torch.randn_like(o) for o in out]
    (g_out,) = torch.autograd.grad(out, qkv, grads)
    (g_ref,) = torch.autograd.grad(ref, qkv, grads)
    assert_close(g_out, g_ref, rtol=1e-5, atol=1e-6)


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # inf * 0 off the rotated range, discarded
def test_untouched_tokens_are_bit_exact():
    B, H, T, d, P, N = 2, 2, 15, 8, 2, 9
    _, q, k = _qkv(B, H, T, d, requires_grad=False)
    q[:, :, 0] = float("inf")  # a pathological prefix token must still come out unchanged
    cos, sin = _tables(N, d)
    q_out, k_out = rope_2d(q, k, cos, sin, P, backend="triton")
    for x, o in ((q, q_out), (k, k_out)):
        assert torch.equal(o[:, :, :P], x[:, :, :P])
        assert torch.equal(o[:, :, P + N :], x[:, :, P + N :])


def test_contiguous_inputs_and_gradient_through_contiguous_grads():
    q = torch.randn(2, 2, 13, 16, requires_grad=True)
    k = torch.randn(2, 2, 13, 16, requires_grad=True)
    cos, sin = _tables(12, 16)
    out = rope_2d(q, k, cos, sin, 1, backend="triton")
    ref = rope_2d_reference(q, k, cos, sin, 1)
    loss_out = sum((o * o.detach().sign()).sum() for o in out)
    loss_ref = sum((r * r.detach().sign()).sum() for r in ref)
    g_out, g_ref = torch.autograd.grad(loss_out, (q, k)), torch.autograd.grad(loss_ref, (q, k))
    assert_close(g_out, g_ref, rtol=1e-5, atol=1e-6)


def test_rotation_preserves_pairwise_norms():
    """With DINOv3's tables (angles tiled twice) each pair (x_j, x_{j+d/2}) is rotated, keeping its norm."""
    _, q, k = _qkv(1, 1, 9, 8, requires_grad=False)
    angles = torch.randn(9, 4).tile(2)
    cos, sin = angles.cos(), angles.sin()
    q_out, _ = rope_2d(q, k, cos, sin, backend="triton")

    def pair_norms(x):
        return x[..., :4] ** 2 + x[..., 4:] ** 2

    assert_close(pair_norms(q_out), pair_norms(q), rtol=1e-5, atol=1e-5)


def test_bad_inputs_raise():
    q = torch.randn(1, 2, 5, 8)
    cos, sin = _tables(4, 8)
    with pytest.raises(ValueError, match="one shape"):
        rope_2d(q, torch.randn(1, 2, 6, 8), cos, sin, backend="triton")
    with pytest.raises(ValueError, match="even head_dim"):
        rope_2d(torch.randn(1, 2, 5, 7), torch.randn(1, 2, 5, 7), *_tables(4, 7), backend="triton")
    with pytest.raises(ValueError, match="does not fit"):
        rope_2d(q, q, cos, sin, num_prefix_tokens=2, backend="triton")
    with pytest.raises(ValueError, match=r"\[N, d=8\]"):
        rope_2d(q, q, *_tables(4, 6), backend="triton")
