"""residual_scale_drop: exact drop-path semantics on both backends, gradients vs reference."""

import pytest
import torch
from torch.testing import assert_close

from vitlab.kernels import residual_scale_drop
from vitlab.kernels.residual import drop_path_scale

SHAPES = [(8, 13, 24), (6, 40), (4, 3, 5, 16)]


def _gen(seed=3):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("backend", ["triton", "torch"])
def test_drop_path_is_exact(backend):
    B, T, D, p = 16, 13, 24, 0.5
    x, y, gamma = torch.randn(B, T, D), torch.randn(B, T, D), torch.randn(D)
    out = residual_scale_drop(x, y, gamma, p, training=True, generator=_gen(), backend=backend)

    kept = torch.empty(B).bernoulli_(1 - p, generator=_gen()).bool()
    assert 0 < kept.sum() < B, "the seed should keep some samples and drop others"
    scale = torch.tensor(1.0) / (1 - p)  # float32 1/(1-p), as the kernel's per-sample scale
    assert torch.equal(out[~kept], x[~kept])
    assert torch.equal(out[kept], x[kept] + (gamma * y[kept]) * scale)


def test_backends_agree_bit_for_bit_for_one_generator_state():
    x, y, gamma = torch.randn(8, 13, 24), torch.randn(8, 13, 24), torch.randn(24)
    a = residual_scale_drop(x, y, gamma, 0.3, True, generator=_gen(7), backend="triton")
    b = residual_scale_drop(x, y, gamma, 0.3, True, generator=_gen(7), backend="torch")
    assert torch.equal(a, b)


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # inf * 0 in discarded lanes
def test_dropped_sample_is_x_even_when_branch_is_not_finite():
    x, y = torch.randn(16, 5, 8), torch.randn(16, 5, 8)
    y[:] = float("inf")
    out = residual_scale_drop(x, y, None, 0.5, True, generator=_gen(), backend="triton")
    dropped = drop_path_scale(16, 0.5, True, x.device, _gen()) == 0
    assert dropped.any() and torch.equal(out[dropped], x[dropped])


@pytest.mark.parametrize("p, training", [(0.0, True), (0.4, False)])
def test_no_drop_is_plain_scaled_sum(p, training):
    x, y, gamma = torch.randn(4, 9, 24), torch.randn(4, 9, 24), torch.randn(24)
    out = residual_scale_drop(x, y, gamma, p, training, backend="triton")
    assert torch.equal(out, x + gamma * y)
    assert torch.equal(residual_scale_drop(x, y, None, p, training, backend="triton"), x + y)


@pytest.mark.parametrize("with_gamma", [True, False])
@pytest.mark.parametrize("p, training", [(0.5, True), (0.0, True), (0.2, False)])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_gradients_match_reference(shape, p, training, with_gamma):
    x = torch.randn(shape, requires_grad=True)
    y = torch.randn(shape, requires_grad=True)
    gamma = torch.randn(shape[-1], requires_grad=True) if with_gamma else None
    out = residual_scale_drop(x, y, gamma, p, training, generator=_gen(), backend="triton")
    ref = residual_scale_drop(x, y, gamma, p, training, generator=_gen(), backend="torch")
    assert torch.equal(out, ref)
    inputs = [t for t in (x, y, gamma) if t is not None]
    g = torch.randn_like(out)
    for go, gr in zip(torch.autograd.grad(out, inputs, g), torch.autograd.grad(ref, inputs, g)):
        assert_close(go, gr, rtol=1e-5, atol=1e-5)


def test_vit_sized_tokens():
    """ViT-S width and a CLS + 196-patch sequence, with LayerScale and drop path."""
    x, y = torch.randn(2, 197, 384, requires_grad=True), torch.randn(2, 197, 384, requires_grad=True)
    gamma = torch.randn(384, requires_grad=True)
    out = residual_scale_drop(x, y, gamma, 0.5, True, generator=_gen(1), backend="triton")
    ref = residual_scale_drop(x, y, gamma, 0.5, True, generator=_gen(1), backend="torch")
    assert torch.equal(out, ref)
    g = torch.randn_like(out)
    for go, gr in zip(torch.autograd.grad(out, (x, y, gamma), g), torch.autograd.grad(ref, (x, y, gamma), g)):
        assert_close(go, gr, rtol=1e-5, atol=1e-4)


def test_non_contiguous_inputs():
    x = torch.randn(13, 6, 24).transpose(0, 1).requires_grad_()  # [6, 13, 24], permuted
    big = torch.randn(6, 13, 48, requires_grad=True)
    y = big[..., :24]  # strided rows
    gamma = torch.randn(24, requires_grad=True)
    out = residual_scale_drop(x, y, gamma, 0.5, True, generator=_gen(), backend="triton")
    ref = residual_scale_drop(x, y, gamma, 0.5, True, generator=_gen(), backend="torch")
    assert torch.equal(out, ref)
    g = torch.randn_like(out)
    leaves = (x, big, gamma)
    for go, gr in zip(torch.autograd.grad(out, leaves, g), torch.autograd.grad(ref, leaves, g)):
        assert_close(go, gr, rtol=1e-5, atol=1e-5)


def test_bad_inputs_raise():
    x = torch.randn(2, 3, 8)
    with pytest.raises(ValueError, match=r"drop_prob must be in \[0, 1\)"):
        residual_scale_drop(x, x, None, 1.0, True, backend="triton")
    with pytest.raises(ValueError, match="one shape"):
        residual_scale_drop(x, torch.randn(2, 3, 9), None, 0.1, True, backend="triton")
    with pytest.raises(ValueError, match=r"gamma must have shape \[D\]=\[8\]"):
        residual_scale_drop(x, x, torch.randn(3), 0.1, True, backend="triton")


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_a_low_precision_branch_joins_the_stream_under_autocast_only(backend):
    """Under bf16 autocast a block's branch (a linear layer's output) is bf16 while the residual stream
    stays fp32 (``cat`` with fp32 tokens promotes it): the branch is cast up, as ``x + y`` would."""
    x, y, gamma = torch.randn(2, 5, 8), torch.randn(2, 5, 8).bfloat16(), torch.rand(8)
    with pytest.raises(TypeError, match="one dtype"):
        residual_scale_drop(x, y, gamma, 0.0, True, backend=backend)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = residual_scale_drop(x, y, gamma, 0.0, True, backend=backend)
    assert out.dtype == torch.float32
    assert_close(out, x + gamma * y.float())


def test_hybrid_trains_under_bf16_autocast():
    """Every block type (A, R, H) forward and backward under autocast: what a CUDA bf16 run does."""
    from tests.models.helpers import tiny
    from vitlab.config import instantiate

    model = instantiate(tiny("HRA", max_drop_path_rate=0.1)).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(torch.randn(2, 3, 16, 16)).float().square().mean()
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters() if p.requires_grad)
