"""CUDA-only checks: half precision against the float32-computing references at ViT sizes,
``auto`` choosing Triton, and the DINO loss's memory and speed advantage at K = 65536."""

import pytest
import torch
from torch.testing import assert_close

import vitlab.kernels as K
from vitlab.kernels import resolve_backend

pytestmark = pytest.mark.gpu

DTYPES = [torch.float32, torch.bfloat16, torch.float16]
TOL = {torch.float32: 1e-5, torch.bfloat16: 2e-2, torch.float16: 4e-3}


def _close(actual, expected, dtype):
    """Elementwise check, with the absolute slack scaled to the tensor's magnitude."""
    scale = expected.detach().float().abs().max().item() or 1.0
    assert_close(actual.float(), expected.float(), rtol=TOL[dtype], atol=TOL[dtype] * scale)


def _compare(fn, inputs, dtype):
    """Run ``fn(backend)`` on both backends; compare outputs and gradients w.r.t. ``inputs``."""
    out, ref = fn("triton"), fn("torch")
    out = out if isinstance(out, tuple) else (out,)
    ref = ref if isinstance(ref, tuple) else (ref,)
    for o, r in zip(out, ref):
        _close(o, r, dtype)
    grads = [torch.randn_like(o) for o in out]
    for go, gr in zip(torch.autograd.grad(out, inputs, grads), torch.autograd.grad(ref, inputs, grads)):
        _close(go, gr, dtype)


def _leaf(*shape, dtype, scale=1.0):
    return (torch.randn(*shape, device="cuda") * scale).to(dtype).requires_grad_()


def test_auto_picks_triton_on_cuda():
    assert resolve_backend("auto", torch.randn(2, device="cuda")) == "triton"
    assert resolve_backend("auto", torch.randn(2, device="cuda", dtype=torch.float64)) == "torch"


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("H, T, d, P", [(6, 197, 64, 1), (16, 261, 64, 5), (12, 1025, 128, 1)])
def test_rope(dtype, H, T, d, P):
    N = T - P
    qkv = _leaf(4, T, 3, H, d, dtype=dtype)
    q, k, _ = qkv.permute(2, 0, 3, 1, 4).unbind(0)
    angles = torch.randn(N, d // 2, device="cuda").tile(2)
    cos, sin = angles.cos(), angles.sin()
    _compare(lambda b: K.rope_2d(q, k, cos, sin, P, backend=b), [qkv], dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("D", [384, 768, 1024])
@pytest.mark.parametrize("kind", ["layer", "rms"])
def test_norm(dtype, D, kind):
    x, r = _leaf(8, 197, D, dtype=dtype), _leaf(8, 197, D, dtype=dtype)
    w, bias = _leaf(D, dtype=torch.float32), _leaf(D, dtype=torch.float32)
    if kind == "layer":
        _compare(lambda b: K.layer_norm(x, w, bias, 1e-6, residual=r, backend=b), [x, r, w, bias], dtype)
    else:
        _compare(lambda b: K.rms_norm(x, w, 1e-6, residual=r, backend=b), [x, r, w], dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_residual_scale_drop(dtype):
    x, y, gamma = _leaf(16, 261, 768, dtype=dtype), _leaf(16, 261, 768, dtype=dtype), _leaf(768, dtype=dtype)

    def run(backend):
        gen = torch.Generator(device="cuda").manual_seed(0)
        return K.residual_scale_drop(x, y, gamma, 0.3, True, generator=gen, backend=backend)

    assert torch.equal(run("triton"), run("torch"))  # one rounding each way, no FMA: bit-exact
    _compare(run, [x, y, gamma], dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_swiglu(dtype):
    w12 = _leaf(8, 197, 2 * 1024, dtype=dtype)
    a, b = w12.chunk(2, dim=-1)
    _compare(lambda be: K.swiglu(a, b, backend=be), [w12], dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_hyena_gate(dtype):
    y, v, gate = (_leaf(8, 384, 14, 14, dtype=dtype) for _ in range(3))
    skip = _leaf(384, dtype=torch.float32)
    _compare(lambda b: K.hyena_gate(y, v, gate, skip, backend=b), [y, v, gate, skip], dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_hyena_gates_in_the_mixer_layout(dtype):
    """As Hyena2D calls them: v and gates are channel slices of one short-conv output, y the
    float32 irfft2 output's [:R, :W] corner (ViT-B, 16x16 grid + a padded row)."""
    u = _leaf(8, 3 * 768, 17, 16, dtype=dtype)
    gate, gate_in, v = u.split(768, dim=1)
    full = _leaf(8, 768, 34, 32, dtype=torch.float32)
    skip = _leaf(768, dtype=torch.float32)
    _compare(lambda b: K.hyena_input_gate(v, gate_in, backend=b)[0], [u], dtype)
    _compare(lambda b: K.hyena_gate(full[..., :17, :16], v, gate, skip, backend=b), [full, u, skip], dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_dino_loss(dtype):
    teacher = _leaf(128, 65536, dtype=dtype, scale=10.0).detach()
    p = K.sinkhorn_knopp(teacher, 0.04, backend="triton")
    assert_close(p, K.sinkhorn_knopp(teacher, 0.04, backend="torch"), rtol=1e-3, atol=1e-6)
    s = _leaf(128, 65536, dtype=dtype, scale=10.0)
    _compare(lambda b: K.softmax_cross_entropy(s, p, 0.1, backend=b), [s], dtype)


def _peak_bytes(fn):
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


def test_dino_loss_memory_and_speed_at_65536_prototypes():
    from triton.testing import do_bench

    s = torch.randn(256, 65536, device="cuda", requires_grad=True)
    p = torch.softmax(torch.randn(256, 65536, device="cuda"), dim=-1)

    def step(backend):
        def run():
            loss = K.softmax_cross_entropy(s, p, 0.1, backend=backend)
            torch.autograd.grad(loss.sum(), s)  # no .grad accumulation between runs

        return run

    fused, eager = _peak_bytes(step("triton")), _peak_bytes(step("torch"))
    assert fused < 0.5 * eager, (fused, eager)  # the gradient only, vs B x K temporaries in eager
    assert do_bench(step("triton")) < do_bench(step("torch"))
