"""Hyena 2D's fast paths against a plain reference: the eval-mode filter-FFT cache (never stale),
and the training forward/backward, on fresh random inputs."""

import copy

import torch
from torch.testing import assert_close

from vitlab.mixers import Hyena2D
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


def _mixer(order=2):
    torch.manual_seed(0)
    return Hyena2D(8, order=order, filter_hidden=8)


def test_training_forward_and_grads_match_plain_reference():
    for order in (2, 3):
        m = _mixer(order)
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


def test_eval_cache_hits_and_matches_reference():
    m = _mixer().eval()
    layout = TokenLayout(4, 4, 0, 0)
    x = torch.randn(2, 16, 8)
    with torch.no_grad():
        out = m(x, layout)
        k_f = m.filter_fft(4, 4)
        assert m.filter_fft(4, 4) is k_f  # served from the cache
        assert_close(out, plain_hyena(m, x, layout), rtol=1e-5, atol=1e-6)
        assert_close(k_f, m._filter_fft(4, 4))
        assert m.filter_fft(2, 8) is not k_f  # another grid, another entry
        assert m.filter_fft(2, 8).shape == (1, 8, 4, 9)


def test_no_cache_with_grad_or_in_training():
    m = _mixer().eval()
    assert m.filter_fft(4, 4) is not m.filter_fft(4, 4)  # grad enabled: the filter must get gradients
    assert m.filter_fft(4, 4).requires_grad
    m.train()
    with torch.no_grad():
        assert m.filter_fft(4, 4) is not m.filter_fft(4, 4)


def test_cache_never_serves_stale_weights():
    m = _mixer().eval()
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
    assert m._filter_fft_cache
    m.train()
    assert not m._filter_fft_cache


def test_deepcopy_and_dtype_change_do_not_share_the_cache():
    m = _mixer().eval()
    with torch.no_grad():
        k_f = m.filter_fft(3, 3)
        twin = copy.deepcopy(m)
        with torch.no_grad():
            for p in twin.filter.parameters():
                p.add_(1.0)
        assert not torch.equal(twin.filter_fft(3, 3), k_f)
        m.double()
        assert_close(m.filter_fft(3, 3), m._filter_fft(3, 3))
        assert m.filter_fft(3, 3).dtype == torch.complex128  # float64 stays float64


def test_no_grad_training_forward_matches_reference():
    m = _mixer(order=3)  # train mode, no autograd: the in-place spectral product, no cache
    layout = TokenLayout(5, 3, 0, 0)
    x = torch.randn(2, 15, 8)
    with torch.no_grad():
        assert_close(m(x, layout), plain_hyena(m, x, layout), rtol=1e-5, atol=1e-6)
    with torch.inference_mode():
        m.eval()
        assert_close(m(x, layout), plain_hyena(m, x, layout), rtol=1e-5, atol=1e-6)
        assert_close(m(x, layout), plain_hyena(m, x, layout), rtol=1e-5, atol=1e-6)  # cached
