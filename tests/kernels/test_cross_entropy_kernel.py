"""softmax_cross_entropy: Triton vs torch reference, gradients, K split over programs, stability."""

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from vitlab.kernels import sinkhorn_knopp, softmax_cross_entropy

# (B, K): K > 1024 with few rows exercises the split of K over programs and their combination.
SHAPES = [(6, 512), (5, 129), (3, 3000), (1, 1)]


def _check(s, p, temp, leaves):
    out = softmax_cross_entropy(s, p, temp, backend="triton")
    ref = softmax_cross_entropy(s, p, temp, backend="torch")
    assert out.shape == (s.shape[0],) and out.dtype == torch.float32
    assert_close(out, ref, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(out)
    for go, gr in zip(torch.autograd.grad(out, leaves, g), torch.autograd.grad(ref, leaves, g)):
        # softmax - p cancels where the two agree: judge the error against the gradient's scale
        assert_close(go, gr, rtol=1e-5, atol=1e-5 * gr.abs().max().item())


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_matches_reference(shape):
    s = (torch.randn(shape) * 3).requires_grad_()
    p = torch.softmax(torch.randn(shape) * 2, dim=-1).requires_grad_()
    _check(s, p, 0.1, [s, p])


def test_equals_dino_formula():
    s, p = torch.randn(4, 200), torch.softmax(torch.randn(4, 200), dim=-1)
    expected = -(p * F.log_softmax(s / 0.1, dim=-1)).sum(-1)
    assert_close(softmax_cross_entropy(s, p, 0.1, backend="triton"), expected, rtol=1e-5, atol=1e-5)


def test_gradient_is_softmax_minus_target_over_temp():
    s = torch.randn(3, 77, requires_grad=True)
    p = torch.softmax(torch.randn(3, 77), dim=-1)
    (grad,) = torch.autograd.grad(softmax_cross_entropy(s, p, 0.1, backend="triton").sum(), s)
    assert_close(grad, (torch.softmax(s.detach() / 0.1, -1) - p) / 0.1, rtol=1e-4, atol=1e-5)


def test_unnormalised_targets_and_teacher_gradient():
    """Masked or partial targets need not sum to 1; the loss is still the reference's."""
    s = torch.randn(4, 300, requires_grad=True)
    p = (torch.rand(4, 300) * (torch.rand(4, 300) > 0.5)).requires_grad_()
    _check(s, p, 0.07, [s, p])


def test_non_contiguous_inputs():
    s = torch.randn(1500, 4).t().requires_grad_()  # [4, 1500], column-major
    big = torch.rand(4, 3000)
    p = big[:, ::2]  # strided columns: copied once
    _check(s, p, 0.1, [s])


@pytest.mark.parametrize("backend", ["triton", "torch"])
def test_stable_with_sinkhorn_targets_at_low_temperature(backend):
    teacher = sinkhorn_knopp(torch.randn(8, 256) * 100, 0.04, backend=backend)
    s = (torch.randn(8, 256) * 100).requires_grad_()
    loss = softmax_cross_entropy(s, teacher, 0.04, backend=backend)
    (grad,) = torch.autograd.grad(loss.sum(), s)
    assert loss.isfinite().all() and grad.isfinite().all()


def test_triton_matches_torch_at_low_temperature():
    teacher = sinkhorn_knopp(torch.randn(8, 256) * 100, 0.04, backend="torch")
    s = (torch.randn(8, 256) * 100).requires_grad_()
    _check(s, teacher, 0.04, [s])


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="one shape"):
        softmax_cross_entropy(torch.randn(4, 8), torch.randn(4, 9), 0.1, backend="triton")
    with pytest.raises(ValueError, match="student_temp > 0"):
        softmax_cross_entropy(torch.randn(4, 8), torch.randn(4, 8), -1.0, backend="triton")
