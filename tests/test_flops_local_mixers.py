"""FLOPs of the neighborhood-attention ("N") and gated-convolution ("C") blocks against ``FlopCounterMode``:
odd grids, registers, padding (``padding_types``), dilation, the flex backend, every grad mode."""

from contextlib import nullcontext

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from tests.models.helpers import tiny
from vitlab.config import L, instantiate
from vitlab.flops import CUSTOM_FLOP_FORMULAS, torch_flop_count
from vitlab.layers import LayerNorm, Mlp
from vitlab.mixers import NeighborhoodAttention
from vitlab.models import Block


def model(pattern, *, registers, padded, **kw):
    readout = "register_concat" if registers else "gap"
    return instantiate(tiny(pattern, num_registers=registers, readout=readout, padding_types=pattern if padded else "",
                            neck_compression_ratio=4 if registers else None, **kw))


@pytest.mark.parametrize("pattern", ["N", "C"])
@pytest.mark.parametrize("registers,padded", [(0, False), (3, False), (3, True), (2, True)])
@pytest.mark.parametrize("size", [(16, 16), (12, 20), (28, 20)])  # grids 4x4, 3x5, 7x5
@pytest.mark.parametrize("train", [False, True])
def test_analytic_flops_match_flop_counter_mode(pattern, registers, padded, size, train):
    net = model(pattern, registers=registers, padded=padded)
    analytic = net.flop_count(inference=not train, image_size=size, batch_size=2)
    assert analytic == pytest.approx(torch_flop_count(net, size, batch_size=2, train=train), rel=0.01)


@pytest.mark.parametrize("window,dilation", [(3, 2), (5, 1), (1, 1), (9, 1)])  # 9: larger than every grid
@pytest.mark.parametrize("train", [False, True])
def test_dilated_and_oversized_windows(window, dilation, train):
    block = L(Block)(mixer_layer=L(NeighborhoodAttention)(num_heads=2, window=window, dilation=dilation),
                     ffn_layer=L(Mlp)(ratio=2.0), norm_layer=L(LayerNorm)())
    net = instantiate(tiny("N", num_registers=1, layer_types={"N": block}))
    for size in [(28, 20), (24, 24)]:
        analytic = net.flop_count(inference=not train, image_size=size, batch_size=2)
        assert analytic == pytest.approx(torch_flop_count(net, size, batch_size=2, train=train), rel=0.01)


@pytest.mark.parametrize("padded", [False, True])
def test_flex_backend_is_counted_by_its_mask(padded):
    """Under the counter, flex_attention runs as its eager op and the block mask's pairs are counted
    (CPU: inference only); the outputs are the SDPA path's."""
    net = model("N", registers=2, padded=padded).eval()
    x = torch.randn(2, 3, 12, 20)
    with torch.no_grad():
        sdpa = net(x)
        for block in net.blocks:
            block.mixer.attn_impl = "flex"
        torch.testing.assert_close(net(x), sdpa, atol=1e-5, rtol=1e-5)
    analytic = net.flop_count(image_size=(12, 20), batch_size=2)
    assert torch_flop_count(net, (12, 20), batch_size=2) == pytest.approx(analytic, rel=1e-6)


@pytest.mark.parametrize("pattern", ["N", "C"])
def test_every_grad_mode_counts_the_same(pattern):
    net = instantiate(tiny(pattern, num_registers=2))
    x = torch.randn(2, 3, 12, 20)
    counts = []
    for mode in (nullcontext, torch.no_grad, torch.inference_mode):
        counter = FlopCounterMode(display=False, custom_mapping=CUSTOM_FLOP_FORMULAS)
        with mode(), counter:
            net(x)
        counts.append(counter.get_total_flops())
    assert counts[0] == counts[1] == counts[2] == net.flop_count(image_size=(12, 20), batch_size=2)


def test_masked_pairs_cost_nothing():
    """The neighbourhood block costs less than global attention, by exactly the masked pairs."""
    net = model("N", registers=1, padded=False)
    report = net.flop_report((28, 20))
    mixer, layout = net.blocks[0].mixer, net.layout_for(7, 5)
    T = layout.num_tokens
    dense = 4 * T * T * net.dim + 2 * T * net.dim * 4 * net.dim
    assert report["layers"][0]["flops"] - net.blocks[0].ffn.flop_count(T) == dense - 4 * (T * T - mixer.attended_pairs(T, layout)) * net.dim
