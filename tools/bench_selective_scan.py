"""Time :func:`vitlab.mixers.selective_scan` forward and backward by its two algorithms, interleaved in one
process: streamed (one chunk: ``chunk_size >= L``, the CPU default; :mod:`vitlab.mixers.streamed_scan`)
against the chunked parallel scan over the materialised ``[B, L, K, Dk, N]`` decays and inputs
(``chunk_size = ceil(sqrt(L))``, the default on GPUs without mamba_ssm), on the shape of Mamba 2D's scan in
``experiments/ablate_mixers.py``'s S variant by default (a batch of 64 global crops, 197 tokens, 2 directions x
256 channels (expand 2 x width 128), 16 states; ``--batch 192 --length 37`` is its local crops').

    python tools/bench_selective_scan.py --repeats 3

Prints the median seconds of each, their ratio, the largest difference of the two results (forward and
every gradient), and the machine's fp32 matmul GFLOP/s.
"""

from __future__ import annotations

import argparse
import math
from functools import partial

import torch
import torch.nn.functional as F

from vitlab.engine.mfu import matmul_gflops
from vitlab.mixers import selective_scan
from vitlab.timing import interleaved_medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--length", type=int, default=197)
    parser.add_argument("--groups", type=int, default=2, help="K: scan directions")
    parser.add_argument("--channels", type=int, default=256, help="Dk: channels per direction")
    parser.add_argument("--state", type=int, default=16, help="N")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    B, L, K, N, D = args.batch, args.length, args.groups, args.state, args.groups * args.channels
    inputs = [torch.randn(B, D, L), F.softplus(torch.randn(B, D, L) - 3), -torch.rand(D, N) * N,
              torch.randn(B, K, N, L), torch.randn(B, K, N, L), torch.randn(D)]  # u, delta, A, B, C, D
    inputs = [x.requires_grad_() for x in inputs]
    weight = torch.randn(B, D, L)
    algorithms = {"chunked parallel scan (sqrt L)": math.isqrt(L - 1) + 1, "streamed (one chunk)": L}

    def run(chunk: int) -> tuple[torch.Tensor, ...]:
        y = selective_scan(*inputs, chunk_size=chunk, backend="torch")
        return (y.detach(), *torch.autograd.grad((y * weight).sum(), inputs))

    cpu = torch.device("cpu")
    times, results = interleaved_medians({name: partial(run, chunk) for name, chunk in algorithms.items()},
                                         args.repeats, cpu)
    diff = max(((x - y).abs().max() / y.abs().max().clamp(min=1)).item() for x, y in zip(*results.values()))
    print(f"selective_scan forward + backward, u [{B}, {D}, {L}], K={K}, N={N}, fp32, {torch.get_num_threads()} "
          f"threads, fp32 matmul {matmul_gflops(cpu):.0f} GFLOP/s; median of {args.repeats} "
          "interleaved repeats")
    for name, seconds in times.items():
        print(f"  {name}: {seconds:.3f} s")
    chunked, streamed = times.values()
    print(f"  streamed is {chunked / streamed:.2f}x faster; largest difference {diff:.1e} (relative to max(1, max|ref|))")


if __name__ == "__main__":
    main()
