"""swiglu: Triton vs torch reference on the strided halves of a fused projection; the gated FFN
runs it for SiLU only."""

from functools import partial

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close

from vitlab.kernels import glu, swiglu
from vitlab.layers import SwiGLU

SHAPES = [(2, 13, 24), (3, 27, 40), (1, 5, 1024), (7, 1536)]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_matches_reference_on_chunked_projection(shape):
    w12 = torch.randn(*shape[:-1], 2 * shape[-1], requires_grad=True)
    a, b = w12.chunk(2, dim=-1)  # strided rows, read in place
    out = swiglu(a, b, backend="triton")
    ref = swiglu(a, b, backend="torch")
    assert_close(out, ref, rtol=1e-5, atol=1e-6)
    assert_close(out, F.silu(a) * b, rtol=1e-5, atol=1e-6)
    g = torch.randn_like(out)
    (g_out,), (g_ref,) = torch.autograd.grad(out, w12, g), torch.autograd.grad(ref, w12, g)
    assert_close(g_out, g_ref, rtol=1e-5, atol=1e-6)


def test_contiguous_and_permuted_inputs():
    a = torch.randn(5, 3, 16, requires_grad=True)
    b = torch.randn(3, 5, 16).transpose(0, 1).requires_grad_()
    out, ref = swiglu(a, b, backend="triton"), swiglu(a, b, backend="torch")
    assert_close(out, ref, rtol=1e-5, atol=1e-6)
    g = torch.randn_like(out)
    g_out, g_ref = torch.autograd.grad(out, (a, b), g), torch.autograd.grad(ref, (a, b), g)
    assert_close(g_out, g_ref, rtol=1e-5, atol=1e-6)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="one shape"):
        swiglu(torch.randn(2, 4), torch.randn(2, 5), backend="triton")
    with pytest.raises(TypeError, match="one dtype"):
        swiglu(torch.randn(2, 4), torch.randn(2, 4, dtype=torch.float64), backend="triton")


class _ScaledSiLU(nn.SiLU):
    """A SiLU subclass that computes something else: must not take the SiLU kernel."""

    def forward(self, x):
        return 2.0 * super().forward(x)


@pytest.mark.parametrize("act,fused", [
    (nn.SiLU, True), (nn.GELU, False), (partial(nn.GELU, approximate="tanh"), False), (nn.ReLU, False),
    (_ScaledSiLU, False),
], ids=["silu", "gelu", "gelu_tanh", "relu", "silu_subclass"])
def test_gated_ffn_takes_the_kernel_only_for_silu(monkeypatch, act, fused):
    calls = []
    real = glu.swiglu_op
    monkeypatch.setattr(glu, "swiglu_op", lambda *args: calls.append(1) or real(*args))
    torch.manual_seed(0)
    ffn = SwiGLU(16, hidden_features=24, act_layer=act)
    ffn.kernels = "triton"  # forced: any activation but SiLU must still run in torch
    x = torch.randn(2, 5, 16, requires_grad=True)
    out = ffn(x)
    assert bool(calls) == fused
    gate, value = ffn.w12(x).chunk(2, dim=-1)
    ref = ffn.w3(act()(gate) * value)
    assert_close(out, ref, rtol=1e-5, atol=1e-6)
    g = torch.randn_like(out)
    assert_close(torch.autograd.grad(out, x, g)[0], torch.autograd.grad(ref, x, g)[0], rtol=1e-5, atol=1e-6)
