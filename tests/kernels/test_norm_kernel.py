"""layer_norm / rms_norm with and without the fused residual add: Triton vs torch reference."""

import pytest
import torch
from torch.testing import assert_close

from vitlab.kernels import layer_norm, rms_norm
from vitlab.kernels.norm import MAX_WIDTH

SHAPES = [(2, 13, 24), (3, 27, 40), (1, 5, 384), (1, 3, 768), (2, 1024)]


def _run(kind, x, w, b, residual, backend):
    if kind == "layer":
        return layer_norm(x, w, b, 1e-6, residual=residual, backend=backend)
    return rms_norm(x, w, 1e-6, residual=residual, backend=backend)


def _check(kind, x, residual, w, b):
    out = _run(kind, x, w, b, residual, "triton")
    ref = _run(kind, x, w, b, residual, "torch")
    out = out if isinstance(out, tuple) else (out,)
    ref = ref if isinstance(ref, tuple) else (ref,)
    assert len(out) == len(ref)
    for o, r in zip(out, ref):
        assert_close(o, r, rtol=1e-5, atol=1e-5)
    inputs = [t for t in (x, residual, w, b) if t is not None and t.requires_grad]
    grads = [torch.randn_like(o) for o in out]
    for go, gr in zip(torch.autograd.grad(out, inputs, grads), torch.autograd.grad(ref, inputs, grads)):
        assert_close(go, gr, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["layer", "rms"])
@pytest.mark.parametrize("with_residual", [False, True])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_matches_reference(kind, with_residual, shape):
    D = shape[-1]
    x = torch.randn(shape, requires_grad=True)
    residual = torch.randn(shape, requires_grad=True) if with_residual else None
    w = (1 + 0.1 * torch.randn(D)).requires_grad_()
    b = (0.1 * torch.randn(D)).requires_grad_() if kind == "layer" else None
    _check(kind, x, residual, w, b)


@pytest.mark.parametrize("kind", ["layer", "rms"])
def test_without_affine(kind):
    x = torch.randn(3, 7, 40, requires_grad=True)
    _check(kind, x, torch.randn(3, 7, 40, requires_grad=True), None, None)
    _check(kind, x, None, None, None)


@pytest.mark.parametrize("kind", ["layer", "rms"])
def test_strided_and_permuted_inputs(kind):
    big = torch.randn(2, 9, 64, requires_grad=True)
    x = big[..., 8:48]  # rows with a stride of 64, read in place
    residual = torch.randn(9, 2, 40).transpose(0, 1).requires_grad_()  # not viewable as rows: copied
    w, b = torch.randn(40, requires_grad=True), torch.randn(40, requires_grad=True)
    _check(kind, x, residual, w, b if kind == "layer" else None)


def test_sum_is_exactly_x_plus_residual():
    x, r = torch.randn(4, 13, 24), torch.randn(4, 13, 24)
    _, s = layer_norm(x, None, None, 1e-6, residual=r, backend="triton")
    assert torch.equal(s, x + r)


def test_only_the_carried_sum_used_downstream():
    x = torch.randn(2, 5, 24, requires_grad=True)
    r = torch.randn(2, 5, 24, requires_grad=True)
    _, s = rms_norm(x, None, 1e-6, residual=r, backend="triton")
    gx, gr = torch.autograd.grad(s.sum(), (x, r))
    assert torch.equal(gx, torch.ones_like(x)) and torch.equal(gr, torch.ones_like(r))


def test_bad_inputs_raise():
    x = torch.randn(2, 8)
    with pytest.raises(ValueError, match=r"weight must have shape \[D\]=\[8\]"):
        layer_norm(x, torch.ones(7), None, 1e-6, backend="triton")
    with pytest.raises(ValueError, match="residual shape"):
        rms_norm(x, None, 1e-6, residual=torch.randn(2, 9), backend="triton")
    with pytest.raises(TypeError, match="residual dtype"):
        rms_norm(x, None, 1e-6, residual=torch.randn(2, 8, dtype=torch.float64), backend="triton")
    with pytest.raises(ValueError, match="use backend='torch'"):
        layer_norm(torch.randn(1, MAX_WIDTH + 1), None, None, 1e-6, backend="triton")
