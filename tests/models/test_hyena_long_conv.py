"""Hyena 2D's two long-convolution paths compute one function: the direct path (a ``[T, T]`` matrix per
channel) against the FFT path on fresh random inputs, at grid sizes padded and not, with and without CLS
and registers, forward and every gradient; ``auto`` picks by the measured crossover, and the FLOP count
follows the path that runs (checked against ``FlopCounterMode``)."""

import pytest
import torch
from torch.testing import assert_close

from tests.models.helpers import tiny
from vitlab.config import L, instantiate
from vitlab.flops import torch_flop_count
from vitlab.layers import LayerNorm, Mlp
from vitlab.mixers import Hyena2D
from vitlab.mixers.hyena2d import DIRECT_MAX_TOKENS, DIRECT_TOKENS_PER_IMAGE, toeplitz_index
from vitlab.models import Block, TokenLayout

# (grid_h, grid_w, cls, registers): padded and not, with and without the extra tokens
LAYOUTS = [(7, 7, 1, 4), (4, 4, 1, 4), (3, 5, 0, 0), (5, 3, 1, 0), (2, 6, 0, 3), (1, 1, 0, 0), (9, 4, 1, 2)]


def _run(m: Hyena2D, x: torch.Tensor, layout: TokenLayout, weights: torch.Tensor):
    x = x.clone().requires_grad_(True)
    out = m(x, layout)
    grads = torch.autograd.grad((out * weights).sum(), [x, *m.parameters()])
    return out, grads


@pytest.mark.parametrize("order", [2, 3])
@pytest.mark.parametrize("grid_h, grid_w, cls, registers", LAYOUTS)
def test_direct_equals_fft_forward_and_gradients(grid_h, grid_w, cls, registers, order):
    layout = TokenLayout(grid_h, grid_w, cls, registers)
    T = layout.num_tokens + layout.num_padding
    m = Hyena2D(12, order=order, filter_hidden=8)
    x, weights = torch.randn(3, T, 12), torch.randn(3, T, 12)
    results = {}
    for path in ("fft", "direct"):
        m.long_conv = path
        results[path] = _run(m, x, layout, weights)
    (out_f, grads_f), (out_d, grads_d) = results["fft"], results["direct"]
    assert_close(out_d, out_f, rtol=1e-5, atol=1e-5)
    names = ["x"] + [n for n, _ in m.named_parameters()]
    for name, a, b in zip(names, grads_d, grads_f):
        assert_close(a, b, rtol=1e-5, atol=1e-5, msg=name)


def test_direct_equals_fft_in_eval_with_the_cached_filters():
    m = Hyena2D(16, filter_hidden=8).eval()
    layout = TokenLayout(6, 5, 1, 4)
    x = torch.randn(2, layout.num_tokens + layout.num_padding, 16)
    with torch.inference_mode():
        outs = {}
        for path in ("fft", "direct", "fft", "direct"):  # second round: served from the cache
            m.long_conv = path
            outs.setdefault(path, []).append(m(x, layout))
    for a, b in zip(outs["direct"], outs["fft"]):
        assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_toeplitz_index_is_the_offset_of_each_token_pair():
    R, W = 3, 4
    idx = toeplitz_index(R, W)
    for t in range(R * W):
        for s in range(R * W):
            dy, dx = t // W - s // W, t % W - s % W
            assert idx[t, s] == (dy % (2 * R)) * (2 * W) + dx % (2 * W)


def test_auto_takes_the_crossovers():
    m = Hyena2D(8, filter_hidden=8)
    big = 10_000
    assert m.path(DIRECT_MAX_TOKENS, big) == "direct" and m.path(DIRECT_MAX_TOKENS + 1, big) == "fft"
    T = 196  # a 14 x 14 grid: direct from T / 12 images
    small_batch = -(-T // DIRECT_TOKENS_PER_IMAGE) - 1
    assert m.path(T, small_batch) == "fft" and m.path(T, small_batch + 1) == "direct"
    for forced in ("direct", "fft"):
        m.long_conv = forced
        assert m.path(T, 1) == m.path(10_000, big) == forced


@pytest.mark.parametrize("batch_size", [1, 2, 64])
def test_the_flop_count_follows_the_path(batch_size):
    m = Hyena2D(8, filter_hidden=8)
    layout = TokenLayout(5, 5, 0, 0)
    counts = {}
    for path in ("direct", "fft"):
        m.long_conv = path
        counts[path] = (m.flop_count(25, layout, batch_size), m.backward_flop_count(25, layout, batch_size))
    m.long_conv = "auto"
    auto = (m.flop_count(25, layout, batch_size), m.backward_flop_count(25, layout, batch_size))
    assert auto == counts[m.path(25, batch_size)]
    assert counts["direct"] != counts["fft"]


@pytest.mark.parametrize("long_conv", ["direct", "fft", "auto"])
@pytest.mark.parametrize("size", [(16, 16), (12, 20), (40, 40)])  # (40, 40): a 10 x 10 grid, 110 tokens padded
@pytest.mark.parametrize("train", [False, True])
def test_flop_count_matches_flop_counter_mode_on_each_path(long_conv, size, train):
    hyena = L(Block)(mixer_layer=L(Hyena2D)(order=2, filter_hidden=16, long_conv=long_conv), ffn_layer=L(Mlp)(ratio=2.0),
                     norm_layer=L(LayerNorm)())
    model = instantiate(tiny("HR", layer_types={"H": hyena, "R": tiny("R").layer_types["R"]}, image_size=size[0]))
    analytic = model.flop_count(inference=not train, image_size=size, batch_size=2)
    assert analytic == pytest.approx(torch_flop_count(model, size, batch_size=2, train=train), rel=0.01)


def test_bad_long_conv_names_the_field_and_value():
    with pytest.raises(ValueError, match="long_conv.*'winograd'"):
        Hyena2D(8, long_conv="winograd")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float64], ids=str)
def test_direct_path_in_other_dtypes_follows_fft(dtype):
    m = Hyena2D(8, filter_hidden=8).to(dtype)
    layout = TokenLayout(4, 4, 1, 2)
    x = torch.randn(2, layout.num_tokens + layout.num_padding, 8, dtype=dtype)
    outs = {}
    for path in ("direct", "fft"):
        m.long_conv = path
        outs[path] = m(x, layout)
    assert outs["direct"].dtype == dtype
    tol = dict(rtol=3e-2, atol=3e-2) if dtype == torch.bfloat16 else dict(rtol=1e-10, atol=1e-10)
    assert_close(outs["direct"].double(), outs["fft"].double(), **tol)
