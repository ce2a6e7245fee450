"""hyena_gate and hyena_input_gate: Triton vs torch reference on fresh random inputs, forward and
every gradient, in the layouts the mixer hands them (the float32 irfft2 crop, channel slices of
the short convolution's output), fp32 and half dtypes."""

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from vitlab.kernels import hyena_gate, hyena_input_gate

SHAPES = [(2, 5, 7, 9), (3, 4, 13), (1, 24, 14, 14), (2, 3), (2, 3, 2, 3, 5)]
HALF = [torch.bfloat16, torch.float16]
# half outputs: one rounding apart at most; gradients may round once more on the reference's path
TOL = {torch.float32: {"rtol": 1e-5, "atol": 1e-5}, torch.bfloat16: {"rtol": 1.6e-2, "atol": 1e-2},
       torch.float16: {"rtol": 2e-3, "atol": 1e-3}}


def _rounded_alike(actual, expected):
    """One rounding to the same dtype on both sides: bit-exact, except that Triton's CPU interpreter
    truncates float32 -> bfloat16 (compiled Triton rounds to nearest even, like torch): one ulp then."""
    if actual.dtype == torch.bfloat16:
        assert_close(actual.float(), expected.float(), rtol=2.0**-7, atol=0)
    else:
        assert torch.equal(actual, expected)


def _check(y, v, gate, skip, leaves, dtype=torch.float32):
    out = hyena_gate(y, v, gate, skip, backend="triton")
    ref = hyena_gate(y, v, gate, skip, backend="torch")
    assert out.dtype == ref.dtype == v.dtype
    assert_close(out, ref, **({"rtol": 1e-5, "atol": 1e-6} if dtype == torch.float32 else TOL[dtype]))
    g = torch.randn_like(out)
    for go, gr in zip(torch.autograd.grad(out, leaves, g), torch.autograd.grad(ref, leaves, g)):
        assert go.dtype == gr.dtype
        assert_close(go.float(), gr.float(), **TOL[dtype])


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


def _mixer_layout(B, C, R, W, dtype):
    """What Hyena2D hands the gate: y, the [:R, :W] corner of a float32 [B, C, 2R, 2W] irfft2 output;
    v and gate, channel slices of one [B, 3C, R, W] short-convolution output."""
    full = torch.randn(B, C, 2 * R, 2 * W, requires_grad=True)
    u = torch.randn(B, 3 * C, R, W).to(dtype).requires_grad_()
    gate, _, v = u.split(C, dim=1)
    return full, full[..., :R, :W], u, v, gate


@pytest.mark.parametrize("dtype", [torch.float32, *HALF], ids=str)
@pytest.mark.parametrize("R, W", [(4, 5), (3, 16), (1, 7)])
def test_float32_irfft2_crop_and_channel_slices_in_place(dtype, R, W):
    full, y, u, v, gate = _mixer_layout(2, 6, R, W, dtype)
    assert not y.is_contiguous() and not v.is_contiguous() and not gate.is_contiguous()
    skip = torch.randn(6, requires_grad=True)
    _check(y, v, gate, skip, [full, u, skip], dtype)


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_torch_path_is_the_old_cast_then_gate(dtype):
    """Rounding y to v's dtype inside the reference is exactly the old ``y.to(v.dtype)`` copy
    followed by the old reference, forward and gradients."""
    full, y, u, v, gate = _mixer_layout(2, 4, 3, 5, dtype)
    skip = torch.randn(4, requires_grad=True)
    new = hyena_gate(y, v, gate, skip, backend="torch")
    y_old = y.to(dtype)
    old = ((y_old.float() + v.float() * skip.float().view(-1, 1, 1)) * gate.float()).to(dtype)
    assert torch.equal(new, old)
    g = torch.randn_like(new)
    leaves = [full, u, skip]
    for a, b in zip(torch.autograd.grad(new, leaves, g), torch.autograd.grad(old, leaves, g)):
        assert torch.equal(a, b)


@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("backend", ["triton", "torch"])
def test_float32_y_is_rounded_to_v_dtype_before_the_skip_add(dtype, backend):
    """(y + v * skip) cancels to exactly 0 when y = 1 + 2^-12 is first rounded to 1.0, as the old
    ``y.to(v.dtype)`` copy did; computing with the float32 y would give 2^-12."""
    y = torch.full((1, 2, 3, 4), 1 + 2.0**-12)
    v, gate = torch.full(y.shape, -1.0, dtype=dtype), torch.ones(y.shape, dtype=dtype)
    out = hyena_gate(y, v, gate, torch.ones(2), backend=backend)
    assert out.dtype == dtype and torch.equal(out, torch.zeros_like(out))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_backward_does_not_keep_the_padded_buffer(dtype):
    """Autograd keeps a compact y (rounded to v's dtype), not the float32 irfft2 buffer it was cut from."""
    full, y, _, v, gate = _mixer_layout(2, 4, 3, 5, dtype)
    skip = torch.randn(4, requires_grad=True)
    saved = []

    def pack(t):
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = hyena_gate(y, v, gate, skip, backend="triton")
    assert saved and all(t.untyped_storage().data_ptr() != full.untyped_storage().data_ptr() for t in saved)
    kept = [t for t in saved if t.shape == y.shape and t.is_contiguous() and t.dtype == dtype]
    _rounded_alike(kept[0], y.detach().to(dtype))  # the NaN-poisoned buffer fails if the kernel missed some
    out.backward(torch.randn_like(out))


def test_compact_y_is_written_only_when_autograd_needs_it(monkeypatch):
    from vitlab.kernels import hyena

    calls, forward = [], hyena._hyena_gate_forward
    monkeypatch.setattr(hyena, "_hyena_gate_forward", lambda *a: calls.append(a[-1]) or forward(*a))
    _, y, _, v, gate = _mixer_layout(1, 3, 2, 4, torch.bfloat16)
    skip = torch.randn(3)
    with torch.no_grad():
        out = hyena_gate(y, v, gate, skip, backend="triton")
    assert_close(out, hyena_gate(y, v, gate, skip, backend="torch"), **TOL[torch.bfloat16])
    hyena_gate(y, v, gate, skip, backend="triton")  # recorded, y a float32 view: keep a compact copy
    compact = y.detach().bfloat16().requires_grad_()
    hyena_gate(compact, v, gate, skip, backend="triton")  # y already compact in v's dtype: saved as is
    assert calls == [False, True, False]


def test_skip_without_grad():
    y, v, gate = (torch.randn(2, 4, 9, requires_grad=True) for _ in range(3))
    _check(y, v, gate, torch.randn(4), [y, v, gate])


def test_bad_inputs_raise():
    x = torch.randn(2, 4, 9)
    with pytest.raises(ValueError, match=r"skip of shape \[C\]=\[4\]"):
        hyena_gate(x, x, x, torch.randn(9), backend="triton")
    with pytest.raises(ValueError, match="one shape"):
        hyena_gate(x, x, torch.randn(2, 4, 8), torch.randn(4), backend="triton")
    half = x.to(torch.float16)
    with pytest.raises(TypeError, match=r"y in v's dtype \(torch.bfloat16\) or float32, got torch.float16"):
        hyena_gate(half, x.bfloat16(), x.bfloat16(), torch.randn(4), backend="triton")
    with pytest.raises(TypeError, match="v and gate of one dtype"):
        hyena_gate(x, x, half, torch.randn(4), backend="triton")


# ----------------------------------------------------------------- hyena_input_gate


def _padded(fft_input, R, W):
    """The reference returns v0 itself (rfft2's s= pads it); the kernel returns it padded in float32."""
    if fft_input.shape[-2:] == (2 * R, 2 * W):
        return fft_input
    return F.pad(fft_input.float(), (0, W, 0, R))


@pytest.mark.parametrize("dtype", [torch.float32, *HALF], ids=str)
@pytest.mark.parametrize("R, W", [(4, 5), (3, 16), (1, 1)])
def test_input_gate_matches_reference(dtype, R, W):
    u = torch.randn(2, 9, R, W).to(dtype).requires_grad_()
    gate, _, v = u.split(3, dim=1)  # channel slices, read in place
    v0, fft_in = hyena_input_gate(v, gate, backend="triton")
    ref_v0, ref_fft = hyena_input_gate(v, gate, backend="torch")
    assert fft_in.shape == (2, 3, 2 * R, 2 * W) and fft_in.dtype == torch.float32 and v0.dtype == dtype
    _rounded_alike(v0, ref_v0)  # one exact product, rounded once
    _rounded_alike(fft_in[..., :R, :W].to(dtype), ref_v0)
    assert torch.equal(fft_in[..., :R, :W], v0.float())  # the FFT reads exactly the v0 the gate reads
    # zeros in the padding, which the kernel writes: rfft2(fft_in) is rfft2(v0, s=(2R, 2W))
    assert torch.equal(fft_in, F.pad(v0.float(), (0, W, 0, R)))
    g0, gp = torch.randn_like(v0), torch.randn(fft_in.shape)
    got = torch.autograd.grad([v0, fft_in], [u], [g0, gp])[0]
    want = torch.autograd.grad([ref_v0, _padded(ref_fft, R, W)], [u], [g0, gp])[0]
    assert_close(got.float(), want.float(), **TOL[dtype])


@pytest.mark.parametrize("used", ["v0", "fft_input"])
def test_input_gate_with_one_output_used(used):
    v, gate = torch.randn(2, 3, 4, 5, requires_grad=True), torch.randn(2, 3, 4, 5, requires_grad=True)

    def loss(outs, weight):
        return (outs[0] * weight).sum() if used == "v0" else (_padded(outs[1], 4, 5) * weight).sum()

    weight = torch.randn(2, 3, 4, 5) if used == "v0" else torch.randn(2, 3, 8, 10)
    got = torch.autograd.grad(loss(hyena_input_gate(v, gate, backend="triton"), weight), [v, gate])
    want = torch.autograd.grad(loss(hyena_input_gate(v, gate, backend="torch"), weight), [v, gate])
    for a, b in zip(got, want):
        assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_input_gate_bad_inputs_raise():
    x = torch.randn(2, 3, 4, 5)
    with pytest.raises(ValueError, match=r"\[B, C, R, W\], got \(2, 3, 20\)"):
        hyena_input_gate(x.flatten(2), x.flatten(2), backend="triton")
    with pytest.raises(TypeError, match="one dtype, got torch.float32 and torch.float16"):
        hyena_input_gate(x, x.half(), backend="triton")
