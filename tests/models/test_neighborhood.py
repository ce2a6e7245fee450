"""NeighborhoodAttention: the mask against NAT's neighbourhoods built by brute force, the forward and its
gradients against per-query attention over those neighbourhoods, flex against SDPA, the global tokens."""

import copy
import warnings

import pytest
import torch

from vitlab.config import L
from vitlab.layers import LayerNorm, RotaryEmbedding2D
from vitlab.mixers import Attention, NeighborhoodAttention
from vitlab.mixers.neighborhood import axis_windows, window_keys
from vitlab.models import TokenLayout

ROPE = L(RotaryEmbedding2D)(base=100.0)


def nat_axis(length, window, dilation):
    """NAT's neighbours along one axis, by the definition: the ``window`` members of a position's dilation
    group nearest to it, the window slid inwards at the group's ends (all of the group if it is shorter)."""
    out = []
    for i in range(length):
        group = [p for p in range(length) if p % dilation == i % dilation]
        k = min(window, len(group))
        start = min(max(group.index(i) - window // 2, 0), len(group) - k)
        out.append(group[start:start + k])
    return out


def reference_keys(layout, tokens, window, dilation):
    """The keys of every query token as sets, by the documented rule."""
    h, w, N, real = layout.grid_h, layout.grid_w, layout.num_patches, layout.num_tokens
    rows, cols = nat_axis(h, window, dilation), nat_axis(w, window, dilation)
    keys = []
    for t in range(tokens):
        if t < N:
            near = {r * w + c for r in rows[t // w] for c in cols[t % w]}
            keys.append(near | set(range(N, real)))
        elif t < real:
            keys.append(set(range(real)))
        else:
            keys.append({t})
    return keys


LAYOUTS = [(TokenLayout(5, 7, 1, 2), 0), (TokenLayout(6, 4, 0, 0), 0), (TokenLayout(4, 5, 1, 3), 3), (TokenLayout(2, 9, 1, 0), 0)]


@pytest.mark.parametrize("window,dilation", [(1, 1), (3, 1), (5, 1), (3, 2), (5, 2), (3, 3), (7, 1)])
def test_axis_windows_are_nats(window, dilation):
    for length in range(1, 13):
        lo, hi = axis_windows(length, window, dilation)
        expect = nat_axis(length, window, dilation)
        assert [list(range(a, b + 1, dilation)) for a, b in zip(lo.tolist(), hi.tolist())] == expect
        assert window_keys(length, window, dilation) == sum(map(len, expect))
        if dilation == 1 and length >= window:  # NATTEN's closed form of the clamped window's start
            ns = window // 2
            assert lo.tolist() == [max(i - ns, 0) + (i + ns >= length) * (length - i - ns - 1) for i in range(length)]


@pytest.mark.parametrize("window,dilation", [(3, 1), (5, 1), (3, 2), (7, 1)])
@pytest.mark.parametrize("layout,pad", LAYOUTS)
def test_mask_is_the_documented_rule(layout, pad, window, dilation):
    attn = NeighborhoodAttention(16, num_heads=2, window=window, dilation=dilation)
    T = layout.num_tokens + pad
    mask = attn.mask(layout, T)
    expect = reference_keys(layout, T, window, dilation)
    assert [set(torch.nonzero(row).flatten().tolist()) for row in mask] == expect
    assert attn.attended_pairs(T, layout) == int(mask.sum())
    if layout.grid_h >= window * dilation and layout.grid_w >= window * dilation:
        assert (mask[: layout.num_patches, : layout.num_patches].sum(1) == window**2).all()


def per_query_attention(attn, x, layout, keys):
    """softmax(q k^T / sqrt(d)) v over each query's own key list, one query at a time, then the projection."""
    q, k, v = attn._qkv(x, layout)  # [B, H, T, d]
    out = torch.zeros_like(q)
    for t, ks in enumerate(keys):
        ks = torch.tensor(sorted(ks))
        weights = (q[:, :, t : t + 1] @ k[:, :, ks].transpose(-2, -1) * attn.head_dim**-0.5).softmax(-1)
        out[:, :, t] = (weights @ v[:, :, ks])[:, :, 0]
    B, T, D = x.shape
    return attn.proj(out.transpose(1, 2).reshape(B, T, D))


@pytest.mark.parametrize("attn_impl", ["sdpa", "flex"])
@pytest.mark.parametrize("layout,pad", LAYOUTS[:3])
@pytest.mark.parametrize("window,dilation,rope", [(3, 1, True), (3, 2, False), (5, 1, True)])
def test_forward_is_attention_over_each_neighbourhood(layout, pad, window, dilation, rope, attn_impl):
    torch.manual_seed(0)
    attn = NeighborhoodAttention(32, num_heads=4, window=window, dilation=dilation, rope_layer=ROPE if rope else None,
                                 qk_norm_layer=L(LayerNorm)(), attn_impl=attn_impl).eval()
    T = layout.num_tokens + pad
    x = torch.randn(2, T, 32)
    with torch.no_grad():
        ref = per_query_attention(attn, x, layout, reference_keys(layout, T, window, dilation))
        torch.testing.assert_close(attn(x, layout), ref, atol=1e-5, rtol=1e-5)
        weights = attn.attention_weights(x, layout)  # [B, H, T, T]
        torch.testing.assert_close(weights.sum(-1), torch.ones(2, 4, T))
        assert (weights[:, :, ~attn.mask(layout, T)] == 0).all()


def test_gradients_match_the_per_query_reference():
    torch.manual_seed(0)
    layout, T = TokenLayout(4, 5, 1, 2), 23 + 2
    attn = NeighborhoodAttention(16, num_heads=2, window=3, dilation=1, rope_layer=ROPE).double()
    ref = copy.deepcopy(attn)
    x = torch.randn(2, T, 16, dtype=torch.float64, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_()
    attn(x, layout).square().sum().backward()
    per_query_attention(ref, x_ref, layout, reference_keys(layout, T, 3, 1)).square().sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad)
    for (name, p), q in zip(attn.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad, q.grad, msg=name)


@pytest.mark.parametrize("rope", [False, True])
def test_window_covering_the_grid_is_global_attention(rope):
    """Global tokens see all and are seen by all: with the whole grid in every window it is plain attention
    (the same parameter names, so Attention's weights load as they are)."""
    torch.manual_seed(0)
    full = Attention(32, num_heads=4, rope_layer=ROPE if rope else None).eval()
    local = NeighborhoodAttention(32, num_heads=4, window=9, rope_layer=ROPE if rope else None).eval()
    local.load_state_dict(full.state_dict())
    layout = TokenLayout(4, 5, 1, 2)
    x = torch.randn(2, layout.num_tokens, 32)
    with torch.no_grad():
        torch.testing.assert_close(local(x, layout), full(x, layout), atol=1e-5, rtol=1e-5)


def test_global_tokens_gather_every_patch_and_pass_it_on():
    """A change to the top-left patch reaches CLS and the registers in one block but not the far corner
    (outside its window); in a second block the far corner hears of it through the global tokens."""
    torch.manual_seed(0)
    attn = NeighborhoodAttention(16, num_heads=2, window=3).eval()
    layout = TokenLayout(5, 5, 1, 2)
    x = torch.randn(1, layout.num_tokens, 16)
    y = x.clone()
    y[0, 0] += 1.0
    with torch.no_grad():
        once = (attn(x, layout) - attn(y, layout)).abs().amax(-1)[0] > 1e-6
        twice = (attn(attn(x, layout), layout) - attn(attn(y, layout), layout)).abs().amax(-1)[0] > 1e-6
    assert once[25:].all() and once[[0, 1, 5, 6]].all()  # CLS, registers, the patch and its neighbours
    assert not once[24] and twice[24]


def test_compiled_flex_block_matches_sdpa_on_cpu():
    """A fullgraph-compiled mixer runs flex_attention inside the graph (CPU: inference only)."""
    torch.manual_seed(0)
    attn = NeighborhoodAttention(32, num_heads=2, window=3, rope_layer=ROPE, attn_impl="flex").eval()
    ref = copy.deepcopy(attn)
    ref.attn_impl = "sdpa"
    layout = TokenLayout(4, 4, 1, 2)
    x = torch.randn(2, layout.num_tokens, 32)
    torch._dynamo.reset()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = torch.compile(attn, fullgraph=True)(x, TokenLayout(4, 4, 1, 2))
        torch.testing.assert_close(out, ref(x, layout), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("grid", [(2, 4), (6, 4), (5, 8)])
def test_flex_on_cpu_is_right_at_token_counts_its_kernel_gets_wrong(grid):
    """Inductor's CPU flex kernel (torch 2.14, AVX2) is wrong at 8, 24, 40 tokens with head_dim 8; the mixer
    pads its operands to a multiple of 16 tokens, so the output matches SDPA's."""
    torch.manual_seed(0)
    attn = NeighborhoodAttention(16, num_heads=2, window=3, attn_impl="flex").eval()
    ref = copy.deepcopy(attn)
    ref.attn_impl = "sdpa"
    layout = TokenLayout(*grid, 0, 0)
    x = torch.randn(2, layout.num_tokens, 16)
    with torch.no_grad():
        torch.testing.assert_close(attn(x, layout), ref(x, layout), atol=1e-5, rtol=1e-5)


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="window=4"):
        NeighborhoodAttention(16, num_heads=2, window=4)
    with pytest.raises(ValueError, match="dilation=0"):
        NeighborhoodAttention(16, num_heads=2, dilation=0)
    with pytest.raises(ValueError, match="attn_impl='natten'"):
        NeighborhoodAttention(16, num_heads=2, attn_impl="natten")
    with pytest.raises(ValueError, match="num_heads=3"):
        NeighborhoodAttention(16, num_heads=3)
    attn = NeighborhoodAttention(16, num_heads=2, attn_impl="flex")
    with pytest.raises(ValueError, match="attn_impl='flex' cannot train on CPU"):
        attn(torch.randn(1, 4, 16), TokenLayout(2, 2, 0, 0))
