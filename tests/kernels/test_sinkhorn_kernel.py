"""sinkhorn_knopp: agrees with DINOv3's exp-domain algorithm, has the right marginals, and stays
finite where that algorithm does not."""

import pytest
import torch
from torch.testing import assert_close

from vitlab.kernels import sinkhorn_knopp


def dinov3_sinkhorn(logits, temp, n_iterations):
    """DINOv3's exp-domain Sinkhorn-Knopp, transcribed in float64 as an independent oracle."""
    Q = torch.exp(logits.double() / temp).t()  # [K, B]
    K, B = Q.shape
    Q /= Q.sum()
    for _ in range(n_iterations):
        Q /= Q.sum(dim=1, keepdim=True)
        Q /= K
        Q /= Q.sum(dim=0, keepdim=True)
        Q /= B
    return (Q * B).t()


SHAPES = [(24, 512), (7, 300), (33, 129), (5, 1000)]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("n_iterations", [1, 3])
def test_matches_reference_and_dinov3(shape, n_iterations):
    logits = torch.randn(shape) * 2
    out = sinkhorn_knopp(logits, 0.1, n_iterations, backend="triton")
    ref = sinkhorn_knopp(logits, 0.1, n_iterations, backend="torch")
    oracle = dinov3_sinkhorn(logits, 0.1, n_iterations).float()
    assert out.dtype == torch.float32 and out.shape == shape
    assert_close(out, ref, rtol=1e-4, atol=1e-7)
    assert_close(out, oracle, rtol=1e-4, atol=1e-7)


def test_marginals():
    B, K = 16, 64
    logits = torch.randn(B, K)
    p = sinkhorn_knopp(logits, 0.5, n_iterations=20, backend="triton")
    assert_close(p.sum(dim=1), torch.ones(B), rtol=0, atol=1e-5)  # exact after the last sample step
    assert_close(p.sum(dim=0), torch.full((K,), B / K), rtol=1e-4, atol=0)  # converged prototype mass
    p3 = sinkhorn_knopp(logits, 0.5, n_iterations=3, backend="triton")
    assert_close(p3.sum(dim=1), torch.ones(B), rtol=0, atol=1e-5)


@pytest.mark.parametrize("backend", ["triton", "torch"])
def test_stable_at_low_temperature_and_large_logits(backend):
    logits = torch.randn(16, 256) * 100
    logits[3] -= 400  # a sample far below the others: its exp underflows in the exp domain
    assert not dinov3_sinkhorn(logits.float(), 0.04, 3).float().isfinite().all()  # why log domain
    p = sinkhorn_knopp(logits, 0.04, 3, backend=backend)
    assert p.isfinite().all()
    assert_close(p.sum(dim=1), torch.ones(16), rtol=0, atol=1e-5)


def test_non_contiguous_logits():
    logits = torch.randn(200, 12).t()  # [12, 200], column-major
    assert_close(sinkhorn_knopp(logits, 0.1, backend="triton"), sinkhorn_knopp(logits, 0.1, backend="torch"),
                 rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("backend", ["triton", "torch"])
def test_all_reduce_hook_sees_the_global_batch(backend):
    """Two ranks holding the same crops must get what one process gets on the doubled batch."""

    def twin_ranks(t, op):  # all_reduce over two identical ranks
        if op == "sum":
            t.mul_(2)

    logits = torch.randn(6, 96) * 2
    out = sinkhorn_knopp(logits, 0.1, 3, all_reduce=twin_ranks, backend=backend)
    doubled = sinkhorn_knopp(torch.cat([logits, logits]), 0.1, 3, backend=backend)[:6]
    assert_close(out, doubled, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("backend", ["triton", "torch"])
def test_rank_without_samples_joins_every_all_reduce(backend):
    """iBOT: a rank may hold no masked patch; it must make the same collective calls as the others."""
    calls = {}

    def recording(name):
        def all_reduce(t, op):  # stands in for peers that hold samples: max 0, some mass, 4 samples
            calls.setdefault(name, []).append((op, tuple(t.shape)))
            if op == "max":
                t.clamp_(min=0.0)
            else:
                t.add_(4.0)

        return all_reduce

    full = sinkhorn_knopp(torch.randn(5, 40), 0.1, 3, all_reduce=recording("full"), backend=backend)
    empty = sinkhorn_knopp(torch.randn(0, 40), 0.1, 3, all_reduce=recording("empty"), backend=backend)
    assert full.shape == (5, 40) and empty.shape == (0, 40)
    assert calls["empty"] == calls["full"]


def test_no_gradient():
    logits = torch.randn(4, 32, requires_grad=True)
    assert not sinkhorn_knopp(logits, 0.1, backend="triton").requires_grad


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="temp > 0"):
        sinkhorn_knopp(torch.randn(4, 8), 0.0, backend="triton")
    with pytest.raises(ValueError, match="n_iterations >= 1"):
        sinkhorn_knopp(torch.randn(4, 8), 0.1, 0, backend="triton")
    with pytest.raises(ValueError, match=r"\[\.\.\., K\]"):
        sinkhorn_knopp(torch.randn(8), 0.1, backend="triton")
    with pytest.raises(ValueError, match="K >= 1"):
        sinkhorn_knopp(torch.randn(4, 0), 0.1, backend="triton")


@pytest.mark.parametrize("backend", ["triton", "torch"])
def test_leading_axes_and_empty_batch(backend):
    logits = torch.randn(2, 5, 24)  # DINO: [T, B, K]
    out = sinkhorn_knopp(logits, 0.07, backend=backend)
    assert out.shape == (2, 5, 24) and out.dtype == torch.float32
    assert_close(out.reshape(10, 24), sinkhorn_knopp(logits.reshape(10, 24), 0.07, backend=backend))
    empty = sinkhorn_knopp(torch.randn(0, 8), 0.1, backend=backend)  # iBOT without masked patches
    assert empty.shape == (0, 8) and empty.dtype == torch.float32
