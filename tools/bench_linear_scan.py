"""Time :func:`vitlab.mixers.linear_scan` forward and backward by its two algorithms, interleaved in one
process: the chunked parallel scan (``chunk_size = ceil(sqrt(L))``, the GPU default) against one chunk (the
plain recurrence, the CPU default), on the shape of Mamba 2D's scan in ``experiments/ablate_mixers.py``
(a batch of 64 global crops, 197 tokens, 2 directions x 128 channels x 16 states by default).

    python tools/bench_linear_scan.py --repeats 3

Prints the median seconds of each, their ratio, the largest difference of the two results (forward and
both gradients), and the machine's fp32 matmul GFLOP/s.
"""

from __future__ import annotations

import argparse
import math
from functools import partial

import torch

from vitlab.engine.mfu import matmul_gflops
from vitlab.mixers import linear_scan
from vitlab.timing import interleaved_medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs="+", default=[64, 197, 2, 128, 16], help="B L ... (L: dim 1)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    L = args.shape[1]
    log_a = (-torch.rand(*args.shape)).requires_grad_()
    b = torch.randn(*args.shape).requires_grad_()
    weight = torch.randn(*args.shape)
    algorithms = {"chunked (sqrt L)": math.isqrt(L - 1) + 1, "one chunk": L}

    def run(chunk: int) -> tuple[torch.Tensor, ...]:
        h = linear_scan(log_a, b, chunk_size=chunk)
        return (h.detach(), *torch.autograd.grad((h * weight).sum(), (log_a, b)))

    cpu = torch.device("cpu")
    times, results = interleaved_medians({name: partial(run, chunk) for name, chunk in algorithms.items()},
                                         args.repeats, cpu)
    diff = max((x - y).abs().max().item() for x, y in zip(*results.values()))
    print(f"linear_scan forward + backward on {args.shape}, fp32, {torch.get_num_threads()} threads, "
          f"fp32 matmul {matmul_gflops(cpu):.0f} GFLOP/s; median of {args.repeats} interleaved repeats")
    for name, seconds in times.items():
        print(f"  {name}: {seconds:.3f} s")
    chunked, plain = times.values()
    print(f"  one chunk is {chunked / plain:.2f}x faster; largest difference {diff:.1e}")


if __name__ == "__main__":
    main()
