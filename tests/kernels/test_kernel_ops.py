"""The Triton kernels are ``torch.library`` custom ops: their schema, fake (meta) functions and
autograd registrations pass ``opcheck``, and ``torch.compile(fullgraph=True)`` traces each public
kernel function (forced onto the Triton path, run by the interpreter on CPU) without a graph break,
with the eager values and gradients."""

import pytest
import torch
from torch.testing import assert_close

from vitlab.kernels import (
    hyena_gate,
    hyena_input_gate,
    layer_norm,
    residual_scale_drop,
    rms_norm,
    rope_2d,
    sinkhorn_knopp,
    softmax_cross_entropy,
    swiglu,
)


def _cases():
    x, y, d = torch.randn(2, 5, 8), torch.randn(2, 5, 8), torch.randn(8)
    q, k, cos, sin = torch.randn(2, 2, 6, 4), torch.randn(2, 2, 6, 4), torch.randn(4, 4), torch.randn(4, 4)
    h = torch.randn(2, 3, 4, 4)
    full = torch.randn(2, 3, 8, 8)  # a float32 irfft2 output: the gate reads its [:4, :4] corner in place
    return {
        "residual_scale_drop": (lambda x, y, g, backend: residual_scale_drop(x, y, g, 0.0, True, backend=backend),
                                (x, y, d), torch.ops.vitlab.residual_scale_drop, (x, y, d, None)),
        "swiglu": (lambda a, b, backend: swiglu(a, b, backend=backend), (x, y), torch.ops.vitlab.swiglu, (x, y)),
        "layer_norm": (lambda x, r, w, b, backend: layer_norm(x, w, b, 1e-5, residual=r, backend=backend),
                       (x, y, d, d.clone()), torch.ops.vitlab.add_norm, (x, y, d, d.clone(), 1e-5, False)),
        "rms_norm": (lambda x, w, backend: rms_norm(x, w, 1e-5, backend=backend), (x, d),
                     torch.ops.vitlab.add_norm, (x, None, d, None, 1e-5, True)),
        "rope_2d": (lambda q, k, backend: rope_2d(q, k, cos, sin, 1, backend=backend), (q, k),
                    torch.ops.vitlab.rope_2d, (q, k, cos, sin, 1)),
        "hyena_gate": (lambda y, v, g, s, backend: hyena_gate(y[..., :4, :4], v, g, s, backend=backend),
                       (full, h.bfloat16(), h.bfloat16(), torch.randn(3)), torch.ops.vitlab.hyena_gate,
                       (full[..., :4, :4], h.bfloat16(), h.bfloat16(), torch.randn(3), True)),
        "hyena_gate_compact": (lambda y, v, g, s, backend: hyena_gate(y, v, g, s, backend=backend),
                               (h, h.clone(), h.clone(), torch.randn(3)), torch.ops.vitlab.hyena_gate,
                               (h, h.clone(), h.clone(), torch.randn(3), False)),
        "hyena_input_gate": (lambda v, g, backend: hyena_input_gate(v, g, backend=backend),
                             (h, h.clone()), torch.ops.vitlab.hyena_input_gate, (h, h.clone())),
        # the DINO / iBOT loss term; the teacher gets a gradient too when it asks for one
        "softmax_cross_entropy": (lambda s, p, backend: softmax_cross_entropy(s, p, 0.1, backend=backend),
                                  (x[0], y[0].softmax(-1)), torch.ops.vitlab.softmax_cross_entropy,
                                  (x[0], y[0].softmax(-1), 10.0)),
    }


CASES = sorted(_cases())


def _leaves(args):
    return [a.detach().clone().requires_grad_() for a in args]


@pytest.mark.parametrize("name", CASES)
def test_opcheck(name):
    torch.manual_seed(0)
    _, _, op, op_args = _cases()[name]
    op_args = [a.detach().clone().requires_grad_() if isinstance(a, torch.Tensor) else a for a in op_args]
    torch.library.opcheck(op, op_args)


@pytest.mark.parametrize("name", CASES)
def test_fullgraph_compile_matches_eager(name):
    torch.manual_seed(0)
    fn, args, _, _ = _cases()[name]
    torch._dynamo.reset()

    def run(f, leaves):
        out = f(*leaves, backend="triton")
        outs = out if isinstance(out, tuple) else (out,)
        loss = sum((o.float() * torch.linspace(0.5, 1.5, o.numel()).view(o.shape)).sum() for o in outs)
        return outs, torch.autograd.grad(loss, leaves)

    eager_out, eager_grads = run(fn, _leaves(args))
    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")
    out, grads = run(compiled, _leaves(args))
    for a, b in zip(out + grads, eager_out + eager_grads):
        assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_sinkhorn_ops_pass_opcheck():
    torch.manual_seed(0)
    x, inv_temp = torch.randn(6, 40), torch.tensor(25.0)
    for over_samples in (True, False):
        bias = torch.randn(6 if over_samples else 40)
        torch.library.opcheck(torch.ops.vitlab.sinkhorn_logsumexp, (x, bias, inv_temp, over_samples))
    torch.library.opcheck(torch.ops.vitlab.sinkhorn_probs, (x, torch.randn(40), torch.randn(6), inv_temp))


def test_sinkhorn_fullgraph_compile_takes_a_scheduled_temperature():
    """Sinkhorn-Knopp on the Triton path traces without a graph break, with eager's values, and a
    temperature that changes every call (a 0-dim tensor, as the DINO task passes its warmup) reuses
    the graph."""
    torch.manual_seed(0)
    torch._dynamo.reset()
    logits = torch.randn(2, 6, 40) * 3  # [crops, B, K]
    compiled = torch.compile(lambda t, temp: sinkhorn_knopp(t, temp, 3, backend="triton"), fullgraph=True,
                             backend="aot_eager", dynamic=False)
    try:
        compiled(logits, torch.tensor(0.04))
        with torch._dynamo.config.patch(error_on_recompile=True):
            for temp in (0.05, 0.07):
                got = compiled(logits, torch.tensor(temp))
                assert_close(got, sinkhorn_knopp(logits, temp, 3, backend="torch"), rtol=1e-4, atol=1e-7)
    finally:
        torch._dynamo.reset()
