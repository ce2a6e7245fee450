import math

import pytest
import torch

from vitlab.config import L
from vitlab.layers import LayerNorm, RotaryEmbedding2D
from vitlab.mixers import Attention, Hyena2D, NeighborhoodAttention
from vitlab.mixers.attention import rotate_patches
from vitlab.models import TokenLayout


def test_rope_tables_follow_dinov3_parametrization():
    rope = RotaryEmbedding2D(16, base=100.0, normalize_coords="separate")
    expected_periods = 100.0 ** (2 * torch.arange(4) / 8)
    torch.testing.assert_close(rope.periods, expected_periods)
    sin, cos = rope(2, 3)
    # token (row 1, col 2): coordinates 2*(1.5/2)-1 = 0.5 and 2*(2.5/3)-1 = 2/3
    angles_row = 2 * math.pi * 0.5 / expected_periods
    angles_col = 2 * math.pi * (2 / 3) / expected_periods
    angles = torch.cat((angles_row, angles_col)).tile(2)
    torch.testing.assert_close(sin[5], angles.sin())
    torch.testing.assert_close(cos[5], angles.cos())
    minmax = RotaryEmbedding2D(16, base=None, min_period=0.5, max_period=20.0)
    torch.testing.assert_close(minmax.periods[[0, -1]], torch.tensor([0.5, 20.0]))


@pytest.mark.parametrize("mode,h,w,expect", [("max", 2, 4, (1.5 / 4, 2.5 / 4)), ("min", 2, 4, (1.5 / 2, 2.5 / 2))])
def test_rope_normalize_coords(mode, h, w, expect):
    rope = RotaryEmbedding2D(8, normalize_coords=mode)
    coords = rope.coords(h, w, "cpu")
    torch.testing.assert_close(coords[w + 2], 2 * torch.tensor(expect) - 1)


def test_rope_augmentation_only_in_training_and_shared_per_forward():
    rope = RotaryEmbedding2D(8, shift_coords=0.5, jitter_coords=2.0, rescale_coords=2.0)
    rope.eval()
    assert torch.equal(rope(3, 3)[0], rope(3, 3)[0])
    rope.train()
    assert not torch.equal(rope(3, 3)[0], rope(3, 3)[0])
    # Two blocks with the same RoPE settings share one draw within a forward (as DINOv3's single table).
    layout = TokenLayout(3, 3, 1, 0)
    a = layout.cached(rope.cache_key, lambda: rope(3, 3))
    b = layout.cached(RotaryEmbedding2D(8, shift_coords=0.5, jitter_coords=2.0, rescale_coords=2.0).train().cache_key,
                      lambda: rope(3, 3))
    assert a is b


def test_rope_rotates_patches_only():
    attn = Attention(16, num_heads=2, rope_layer=lambda head_dim, **kw: RotaryEmbedding2D(head_dim, **kw)).eval()
    layout = TokenLayout(2, 3, 1, 2)  # 6 patches, CLS, 2 registers
    q, k = torch.randn(2, 1, 2, 9, 8).unbind(0)
    rq, rk = rotate_patches(attn.rope, q, k, layout)
    assert torch.equal(rq[:, :, 6:], q[:, :, 6:]) and torch.equal(rk[:, :, 6:], k[:, :, 6:])
    sin, cos = attn.rope(2, 3)
    x1, x2 = q[:, :, :6].chunk(2, dim=-1)
    rotated_half = torch.cat((-x2, x1), dim=-1)  # [x1, x2] -> [-x2, x1]
    torch.testing.assert_close(rq[:, :, :6], q[:, :, :6] * cos + rotated_half * sin)


@pytest.mark.parametrize("attn_impl", ["sdpa", "math"])
def test_attention_weights_are_the_forwards(attn_impl):
    """forward(x) = proj(attention_weights(x) @ v), with RoPE, QK-norm and the masked key bias."""
    torch.manual_seed(0)
    attn = Attention(32, num_heads=4, mask_k_bias=True, qk_norm_layer=L(LayerNorm)(),
                     rope_layer=L(RotaryEmbedding2D)(base=100.0), attn_impl=attn_impl).eval()
    layout = TokenLayout(2, 3, 1, 2)
    x = torch.randn(2, layout.num_tokens, 32)
    weights = attn.attention_weights(x, layout)
    assert weights.shape == (2, 4, 9, 9)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 4, 9))
    v = attn.qkv(x)[..., 64:].reshape(2, 9, 4, 8).transpose(1, 2)  # no bias mask on values, no RoPE
    torch.testing.assert_close(attn(x, layout), attn.proj((weights @ v).transpose(1, 2).reshape(2, 9, 32)))


@pytest.mark.parametrize("attn_impl", ["sdpa", "math"])
def test_attention_implementations_agree(attn_impl):
    torch.manual_seed(0)
    ref = Attention(32, num_heads=4, attn_impl="math")
    other = Attention(32, num_heads=4, attn_impl=attn_impl)
    other.load_state_dict(ref.state_dict())
    x = torch.randn(2, 10, 32)
    layout = TokenLayout(3, 3, 1, 0)
    torch.testing.assert_close(other(x, layout), ref(x, layout), atol=1e-5, rtol=1e-5)


def test_attention_errors():
    with pytest.raises(ValueError, match="attn_impl"):
        Attention(16, num_heads=2, attn_impl="xformers")
    with pytest.raises(ValueError, match="not divisible by num_heads"):
        Attention(16, num_heads=3)


@pytest.mark.parametrize("cls", [Attention, NeighborhoodAttention])
def test_the_implementation_choice_is_attn_impl_and_backend_its_old_name(cls):
    """``attn_impl`` picks what computes the attention, apart from ``kernels`` (the fused kernels around it);
    ``backend``, its old name, works for one release as keyword and attribute."""
    with pytest.warns(FutureWarning, match=f"{cls.__name__}\\(\\): 'backend' is now 'attn_impl'"):
        attn = cls(16, num_heads=2, backend="sdpa")
    assert attn.attn_impl == "sdpa"
    with pytest.warns(FutureWarning, match=f"{cls.__name__}.backend: 'backend' is now 'attn_impl'"):
        attn.backend = "auto"
    assert attn.attn_impl == "auto"


def test_mask_k_bias_zeroes_the_key_bias():
    attn = Attention(8, num_heads=2, mask_k_bias=True)
    torch.nn.init.normal_(attn.qkv.bias)
    x = torch.randn(1, 4, 8)
    q, k, v = torch.nn.functional.linear(x, attn.qkv.weight, attn.qkv.bias * attn.bias_mask).chunk(3, dim=-1)
    torch.testing.assert_close(k, x @ attn.qkv.weight[8:16].T)


def direct_linear_conv2d(v: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """Reference: y[c, i, j] = sum_{a, b} v[c, a, b] * k[c, i - a, j - b], offsets read from the circular layout."""
    C, R, W = v.shape
    y = torch.zeros_like(v)
    for i in range(R):
        for j in range(W):
            for a in range(R):
                for b in range(W):
                    y[:, i, j] += v[:, a, b] * taps[:, (i - a) % (2 * R), (j - b) % (2 * W)]
    return y


def long_conv(mixer: Hyena2D, v: torch.Tensor, path: str) -> torch.Tensor:
    """The mixer's long convolution of ``v`` [B, D, R, W] with its first filter, by ``path``."""
    R, W = v.shape[-2:]
    k = mixer._long_filter(R, W, path)[0]
    return mixer._fft_conv(v, k, R, W) if path == "fft" else mixer._direct_conv(v, k)


@pytest.mark.parametrize("path", ["fft", "direct"])
@pytest.mark.parametrize("R,W", [(3, 4), (2, 5)])
def test_hyena_long_conv_is_linear_not_circular(R, W, path):
    mixer = Hyena2D(4, filter_hidden=8).double()
    taps = mixer.filter(R, W)  # [C, 2R, 2W]
    assert torch.all(taps[:, R, :] == 0) and torch.all(taps[:, :, W] == 0)
    v = torch.randn(1, 4, R, W, dtype=torch.float64)
    got = long_conv(mixer, v, path)
    torch.testing.assert_close(got[0], direct_linear_conv2d(v[0], taps))


@pytest.mark.parametrize("path", ["fft", "direct"])
def test_hyena_bottom_row_does_not_reach_top_row_through_wraparound(path):
    torch.manual_seed(0)
    mixer = Hyena2D(4, filter_hidden=8).double()
    R, W = 4, 4
    taps = mixer.filter(R, W)
    v = torch.zeros(1, 4, R, W, dtype=torch.float64)
    v[0, :, R - 1, W - 1] = 1.0  # impulse at the bottom-right corner
    y = long_conv(mixer, v, path)
    # a linear convolution only spreads "down-right" offsets >= 0 from (R-1, W-1) into out-of-grid cells,
    # so every output equals the tap at the negative offset, never a tap that wrapped around
    for i in range(R):
        for j in range(W):
            torch.testing.assert_close(y[0, :, i, j], taps[:, i - (R - 1), j - (W - 1)])


@pytest.mark.parametrize("order", [2, 3])
def test_hyena_any_grid_and_order(order):
    mixer = Hyena2D(8, order=order, filter_hidden=8)
    for R, W in [(2, 2), (3, 5), (6, 1)]:
        x = torch.randn(2, R * W, 8, requires_grad=True)
        out = mixer(x, TokenLayout(R, W, 0, 0))
        assert out.shape == x.shape
        out.sum().backward()
        assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("rows,cols", [(1, 1), (2, 5), (7, 7), (15, 4), (25, 25)])
def test_hyena_filter_offsets_equal_fftfreq(rows, cols):
    """The filter's circular offsets are written with ``arange`` (ONNX has no ``fftfreq``): the same values, bit for bit."""
    from vitlab.mixers.implicit_filter import ImplicitFilter2D

    dy, dx, valid = ImplicitFilter2D(4, hidden=8).offsets(rows, cols, "cpu")
    scale = float(max(rows, cols))
    for got, n in ((dy, rows), (dx, cols)):
        expected = torch.fft.fftfreq(2 * n, 1.0 / (2 * n)) / scale
        assert got.dtype == expected.dtype and torch.equal(got, expected)
    assert valid.sum() == (2 * rows - 1) * (2 * cols - 1)
