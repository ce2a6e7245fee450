"""Hyena 2D's fast paths against a plain reference: both long-convolution paths (direct and FFT), the
eval-mode filter cache (never stale), the training forward/backward, and the fused gates (the irfft2
output read in place, the first gating written as the padded FFT input) on Triton's CPU interpreter,
on fresh random inputs."""

import copy

import pytest
import torch
from torch.testing import assert_close

from vitlab.mixers import Hyena2D
from vitlab.mixers.hyena2d import _fft_input
from vitlab.models import TokenLayout


def plain_hyena(m: Hyena2D, x: torch.Tensor, layout: TokenLayout) -> torch.Tensor:
    """Hyena2D's forward written out with nothing cached or fused."""
    B, T, D = x.shape
    R, W = T // layout.grid_w, layout.grid_w
    u = m.in_proj(x).transpose(1, 2).reshape(B, (m.order + 1) * D, R, W)
    *gates, v = m.short_conv(u).split(D, dim=1)
    k = m.filter(R, W).reshape(m.order - 1, D, 2 * R, 2 * W)
    v = v * gates[-1]
    for i in range(m.order - 1):
        y = torch.fft.irfft2(torch.fft.rfft2(v, s=(2 * R, 2 * W)) * torch.fft.rfft2(k[i]),
                             s=(2 * R, 2 * W))[..., :R, :W]
        v = (y + v * m.skip[i].view(-1, 1, 1)) * gates[-2 - i]
    return m.out_proj(v.reshape(B, D, T).transpose(1, 2))


PATHS = ("direct", "fft")


def _mixer(order=2, long_conv="fft"):
    torch.manual_seed(0)
    return Hyena2D(8, order=order, filter_hidden=8, long_conv=long_conv)


@pytest.mark.parametrize("long_conv", PATHS)
def test_training_forward_and_grads_match_plain_reference(long_conv):
    for order in (2, 3):
        m = _mixer(order, long_conv)
        layout = TokenLayout(3, 5, 1, 0)
        x = torch.randn(2, 20, 8)  # 16 tokens padded to 4 rows of 5
        x1, x2 = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        out = m(x1, layout)
        ref = plain_hyena(m, x2, layout)
        assert_close(out, ref, rtol=1e-5, atol=1e-6)
        g = torch.randn_like(out)
        grads = torch.autograd.grad(out, [x1, *m.parameters()], g)
        ref_grads = torch.autograd.grad(ref, [x2, *m.parameters()], g)
        for a, b in zip(grads, ref_grads):
            assert_close(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("long_conv, shape", [("fft", (1, 8, 4, 9)), ("direct", (1, 8, 16, 16))])
def test_eval_cache_hits_and_matches_reference(long_conv, shape):
    m = _mixer(long_conv=long_conv).eval()
    layout = TokenLayout(4, 4, 0, 0)
    x = torch.randn(2, 16, 8)
    with torch.no_grad():
        out = m(x, layout)
        k = m.long_filter(4, 4, long_conv)
        assert m.long_filter(4, 4, long_conv) is k  # served from the cache
        assert_close(out, plain_hyena(m, x, layout), rtol=1e-5, atol=1e-6)
        assert_close(k, m._long_filter(4, 4, long_conv))
        assert m.long_filter(2, 8, long_conv) is not k  # another grid, another entry
        assert m.long_filter(2, 8, long_conv).shape == shape


def test_no_cache_with_grad_or_in_training():
    m = _mixer().eval()
    assert m.long_filter(4, 4, "fft") is not m.long_filter(4, 4, "fft")  # grad enabled: the filter needs gradients
    assert m.long_filter(4, 4, "fft").requires_grad
    m.train()
    with torch.no_grad():
        assert m.long_filter(4, 4, "fft") is not m.long_filter(4, 4, "fft")


@pytest.mark.parametrize("long_conv", PATHS)
def test_cache_never_serves_stale_weights(long_conv):
    m = _mixer(long_conv=long_conv).eval()
    layout = TokenLayout(4, 4, 0, 0)
    x = torch.randn(1, 16, 8)
    filter_params = list(m.filter.parameters())

    def check():
        with torch.no_grad():
            assert_close(m(x, layout), plain_hyena(m, x, layout), rtol=1e-5, atol=1e-6)

    with torch.no_grad():
        m(x, layout)
    # An optimizer step on the filter (in place).
    m.train()
    opt = torch.optim.SGD(m.parameters(), lr=0.5)
    m(torch.randn(1, 16, 8), layout).square().sum().backward()
    opt.step()
    m.eval()
    check()
    with torch.no_grad():  # an in-place write while in eval mode
        m(x, layout)
        filter_params[0].mul_(-1.5)
    check()
    # load_state_dict from another mixer.
    other = Hyena2D(8, filter_hidden=8)
    m.load_state_dict(other.state_dict())
    check()
    # A swapped tensor (``p.data = ...``), same shape, same version count.
    with torch.no_grad():
        m(x, layout)
    filter_params[1].data = torch.randn_like(filter_params[1])
    check()
    # train() drops the cache.
    with torch.no_grad():
        m(x, layout)
    assert m._filter_cache
    m.train()
    assert not m._filter_cache


@pytest.mark.parametrize("long_conv, dtype", [("fft", torch.complex128), ("direct", torch.float64)])
def test_deepcopy_and_dtype_change_do_not_share_the_cache(long_conv, dtype):
    m = _mixer(long_conv=long_conv).eval()
    with torch.no_grad():
        k = m.long_filter(3, 3, long_conv)
        twin = copy.deepcopy(m)
        with torch.no_grad():
            for p in twin.filter.parameters():
                p.add_(1.0)
        assert not torch.equal(twin.long_filter(3, 3, long_conv), k)
        m.double()
        assert_close(m.long_filter(3, 3, long_conv), m._long_filter(3, 3, long_conv))
        assert m.long_filter(3, 3, long_conv).dtype == dtype  # float64 stays float64


@pytest.mark.parametrize("long_conv", PATHS)
def test_no_grad_training_forward_matches_reference(long_conv):
    m = _mixer(order=3, long_conv=long_conv)  # train mode, no autograd (FFT: the in-place spectral product)
    layout = TokenLayout(5, 3, 0, 0)
    x = torch.randn(2, 15, 8)
    with torch.no_grad():
        assert_close(m(x, layout), plain_hyena(m, x, layout), rtol=1e-5, atol=1e-6)
    with torch.inference_mode():
        m.eval()
        assert_close(m(x, layout), plain_hyena(m, x, layout), rtol=1e-5, atol=1e-6)
        assert_close(m(x, layout), plain_hyena(m, x, layout), rtol=1e-5, atol=1e-6)  # cached


def old_forward(m: Hyena2D, x: torch.Tensor, layout: TokenLayout) -> torch.Tensor:
    """Hyena2D's torch path before the gate read y in place: crop and cast ``y``, then gate."""
    B, T, D = x.shape
    R, W = T // layout.grid_w, layout.grid_w
    u = m.in_proj(x).transpose(1, 2).reshape(B, (m.order + 1) * D, R, W)
    *gates, v = m.short_conv(u).split(D, dim=1)
    k_f = m.long_filter(R, W, "fft")
    v = v * gates[-1]
    for i in range(m.order - 1):
        v_f = torch.fft.rfft2(_fft_input(v), s=(2 * R, 2 * W))
        y = torch.fft.irfft2(v_f * k_f[i], s=(2 * R, 2 * W))[..., :R, :W].to(v.dtype)
        skip = m.skip[i].float().view(-1, 1, 1)
        v = ((y.float() + v.float() * skip) * gates[-2 - i].float()).to(y.dtype)
    return m.out_proj(v.reshape(B, D, T).transpose(1, 2))


def _outputs_and_grads(forward, m, x, layout, g=None):
    x = x.clone().requires_grad_(True)
    out = forward(m, x, layout) if forward is not None else m(x, layout)
    g = torch.randn_like(out) if g is None else g
    return out, torch.autograd.grad(out, [x, *m.parameters()], g), g


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_torch_path_is_bit_identical_to_the_old_crop_and_cast(dtype):
    m = _mixer(order=3).to(dtype)
    m.kernels = "torch"
    layout = TokenLayout(3, 5, 1, 0)
    x = torch.randn(2, 20, 8).to(dtype)
    out, grads, g = _outputs_and_grads(None, m, x, layout)
    ref, ref_grads, _ = _outputs_and_grads(old_forward, m, x, layout, g)
    assert torch.equal(out, ref)
    for a, b in zip(grads, ref_grads):
        assert torch.equal(a, b)


@pytest.fixture
def interpreter(monkeypatch):
    """Triton's kernels on the CPU through its interpreter (read at each launch: vitlab.kernels._triton)."""
    pytest.importorskip("triton")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.delenv("VITLAB_KERNELS", raising=False)


@pytest.mark.parametrize("long_conv", PATHS)
@pytest.mark.parametrize("order", [2, 3])
def test_triton_gates_match_plain_reference(interpreter, order, long_conv):
    m = _mixer(order, long_conv)
    m.kernels = "triton"
    layout = TokenLayout(3, 5, 1, 0)  # 16 tokens padded to 4 rows of 5
    x = torch.randn(2, 20, 8)
    out, grads, g = _outputs_and_grads(None, m, x, layout)
    ref, ref_grads, _ = _outputs_and_grads(plain_hyena, m, x, layout, g)
    assert_close(out, ref, rtol=1e-5, atol=1e-6)
    for a, b in zip(grads, ref_grads):
        assert_close(a, b, rtol=1e-4, atol=1e-6)
    with torch.no_grad():  # no autograd: the in-place spectral product, no compact y
        assert_close(m(x, layout), ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("long_conv", PATHS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_triton_gates_follow_the_torch_path_in_half(interpreter, dtype, long_conv):
    m = _mixer(order=3, long_conv=long_conv).to(dtype)
    layout = TokenLayout(4, 4, 0, 0)
    x = torch.randn(2, 16, 8).to(dtype)
    m.kernels = "torch"
    ref, ref_grads, g = _outputs_and_grads(None, m, x, layout)
    m.kernels = "triton"
    out, grads, _ = _outputs_and_grads(None, m, x, layout, g)
    tol = {"rtol": 2e-2, "atol": 2e-2} if dtype == torch.bfloat16 else {"rtol": 4e-3, "atol": 4e-3}
    assert_close(out.float(), ref.float(), **tol)
    for a, b in zip(grads, ref_grads):
        scale = b.float().abs().max().item() or 1.0
        assert_close(a.float(), b.float(), rtol=tol["rtol"], atol=tol["atol"] * scale)
