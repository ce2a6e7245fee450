"""hyena_gate: Triton vs torch reference, all four gradients, channel-first layouts."""

import pytest
import torch
from torch.testing import assert_close

from vitlab.kernels import hyena_gate

SHAPES = [(2, 5, 7, 9), (3, 4, 13), (1, 24, 14, 14), (2, 3)]


def _check(y, v, gate, skip, leaves):
    out = hyena_gate(y, v, gate, skip, backend="triton")
    ref = hyena_gate(y, v, gate, skip, backend="torch")
    assert_close(out, ref, rtol=1e-5, atol=1e-6)
    g = torch.randn_like(out)
    for go, gr in zip(torch.autograd.grad(out, leaves, g), torch.autograd.grad(ref, leaves, g)):
        assert_close(go, gr, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_matches_reference(shape):
    y, v, gate = (torch.randn(shape, requires_grad=True) for _ in range(3))
    skip = torch.randn(shape[1], requires_grad=True)
    _check(y, v, gate, skip, [y, v, gate, skip])


def test_channels_last_and_strided_inputs():
    y = torch.randn(2, 6, 5, 8).permute(0, 3, 1, 2).requires_grad_()  # [2, 8, 6, 5], channels-last memory
    big = torch.randn(2, 8, 6, 10, requires_grad=True)
    v = big[..., :5]
    gate = torch.randn(2, 8, 6, 5, requires_grad=True)
    skip = torch.randn(8, requires_grad=True)
    _check(y, v, gate, skip, [y, big, gate, skip])


def test_skip_without_grad():
    y, v, gate = (torch.randn(2, 4, 9, requires_grad=True) for _ in range(3))
    _check(y, v, gate, torch.randn(4), [y, v, gate])


def test_bad_inputs_raise():
    x = torch.randn(2, 4, 9)
    with pytest.raises(ValueError, match=r"skip of shape \[C\]=\[4\]"):
        hyena_gate(x, x, x, torch.randn(9), backend="triton")
    with pytest.raises(ValueError, match="one shape"):
        hyena_gate(x, x, torch.randn(2, 4, 8), torch.randn(4), backend="triton")
