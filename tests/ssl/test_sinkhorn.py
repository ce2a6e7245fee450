"""Sinkhorn-Knopp centering (the one implementation, ``vitlab.kernels.sinkhorn_knopp``, as the losses
call it): against the linear-domain recipe, marginals, stability, distributed."""

import math
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from vitlab.kernels import distributed_all_reduce, sinkhorn_knopp
from vitlab.ssl import DINOLoss, SoftmaxCenter


def reference_sinkhorn(logits: torch.Tensor, temp: float, n_iterations: int = 3) -> torch.Tensor:
    """The DINOv3 iterations written out in float64, in the linear domain (fine at moderate logits)."""
    q = torch.exp(logits.double() / temp).T  # [K, M]
    k, m = q.shape
    q = q / q.sum()
    for _ in range(n_iterations):
        q = q / q.sum(dim=1, keepdim=True) / k
        q = q / q.sum(dim=0, keepdim=True) / m
    return (q * m).T


@pytest.mark.parametrize("n_iterations", [1, 3, 10])
def test_matches_linear_reference(n_iterations):
    torch.manual_seed(0)
    logits = torch.randn(12, 7)
    out = sinkhorn_knopp(logits, 0.1, n_iterations=n_iterations)
    torch.testing.assert_close(out.double(), reference_sinkhorn(logits, 0.1, n_iterations), rtol=1e-5, atol=1e-7)


def test_keeps_leading_shape_and_float32():
    logits = torch.randn(2, 5, 9, dtype=torch.bfloat16)
    out = sinkhorn_knopp(logits, 0.07)
    assert out.shape == (2, 5, 9) and out.dtype == torch.float32
    torch.testing.assert_close(out.reshape(10, 9), sinkhorn_knopp(logits.reshape(10, 9), 0.07))


def test_marginals():
    torch.manual_seed(1)
    m, k = 64, 16
    logits = torch.randn(m, k) * 0.3
    out = sinkhorn_knopp(logits, 0.1)
    # Every sample is a distribution, exactly.
    torch.testing.assert_close(out.sum(-1), torch.ones(m))
    # Prototype marginals approach M / K: three iterations get within 25 % here, more get there.
    assert (out.sum(0) - m / k).abs().max() < 0.25 * m / k
    converged = sinkhorn_knopp(logits, 0.1, n_iterations=200)
    torch.testing.assert_close(converged.sum(0), torch.full((k,), m / k), rtol=1e-3, atol=1e-3)
    # Balancing pushes the marginals towards uniform compared with a plain softmax.
    plain = torch.softmax(logits / 0.1, -1).sum(0)
    assert (out.sum(0) - m / k).abs().max() < (plain - m / k).abs().max()


def test_stable_at_low_temperature_and_large_logits():
    torch.manual_seed(2)
    logits = torch.randn(32, 50) * 100  # exp(100 / 0.04) overflows float32 by far
    logits[:, 7] = -100.0  # a prototype every sample rejects: all-zero row in the linear domain
    out = sinkhorn_knopp(logits, 0.04)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.sum(-1), torch.ones(32))
    with torch.no_grad():  # the naive form does overflow here
        assert not torch.isfinite(torch.exp(logits / 0.04)).all()


def test_rejects_zero_iterations():
    with pytest.raises(ValueError):
        sinkhorn_knopp(torch.randn(3, 4), 0.1, n_iterations=0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, scenarios, result_queue):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        for name, chunks in scenarios.items():
            probs = sinkhorn_knopp(chunks[rank], 0.05, all_reduce=distributed_all_reduce)
            # The losses pass the all-reduce themselves once torch.distributed is initialised.
            torch.testing.assert_close(DINOLoss(6).teacher_probs(chunks[rank], 0.05), probs)
            center = SoftmaxCenter(chunks[rank].shape[-1], momentum=0.5)
            center.update(chunks[rank])
            result_queue.put((name, rank, probs, center.center))
    finally:
        dist.destroy_process_group()


def test_distributed_matches_single_process():
    """Two gloo ranks with unequal sample counts, or one holding none (a rank without masked
    patches), get their rows of the single-process result on the union."""
    torch.manual_seed(3)
    logits = torch.randn(10, 6) * 3
    scenarios = {"unequal": [logits[:7], logits[7:]], "empty_rank": [logits, logits[10:]]}
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_worker, args=(r, 2, port, scenarios, queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = {}
    for _ in range(2 * len(scenarios)):
        name, rank, probs, center = queue.get(timeout=120)
        results[name, rank] = (probs, center)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    reference = sinkhorn_knopp(logits, 0.05)
    for name in scenarios:
        torch.testing.assert_close(torch.cat([results[name, r][0] for r in range(2)]), reference)
        # The center averages over samples, not ranks.
        for r in range(2):
            torch.testing.assert_close(results[name, r][1], 0.5 * logits.mean(0, keepdim=True))
    assert results["empty_rank", 1][0].shape == (0, 6)


def test_softmax_center_ema():
    center = SoftmaxCenter(4, momentum=0.9)
    logits = torch.tensor([[1.0, 2.0, 3.0, 4.0], [3.0, 2.0, 1.0, 0.0]])
    torch.testing.assert_close(center(logits, 0.5), torch.softmax(logits / 0.5, -1))
    center.update(logits)
    torch.testing.assert_close(center.center, 0.1 * torch.tensor([[2.0, 2.0, 2.0, 2.0]]))
    center.update(logits[None])  # leading axes are all averaged
    torch.testing.assert_close(center.center, (0.09 + 0.1) * torch.tensor([[2.0, 2.0, 2.0, 2.0]]))
    assert math.isclose(center(logits, 1.0).sum(-1)[0].item(), 1.0, rel_tol=1e-6)
