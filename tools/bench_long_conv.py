"""Where does Hyena 2D's FFT long convolution overtake the direct one? The crossover behind
``vitlab.mixers.hyena2d.DIRECT_MAX_TOKENS``.

For square grids of ``side x side`` tokens, one :class:`~vitlab.mixers.Hyena2D` mixer (order 2, width
``--dim``) runs with ``long_conv="direct"`` and ``"fft"``, interleaved (direct, fft, direct, fft, ...) so
drift in the machine's speed hits both alike; each number is the median over ``--repeats``. The batch
holds about ``--tokens`` tokens (``batch = tokens // side^2``, at least 1), so every size does similar work.
fwd+bwd runs in train mode (the filter is rebuilt and gets its gradient every call); fwd runs in eval mode
under ``torch.no_grad`` with the filter cached, as at inference. The machine's fp32 matmul GFLOP/s is
printed beside the times.

The crossover is the smallest token count from which the FFT path is faster at that size and every larger
one measured (fwd+bwd; fwd separately). With ``--batches`` the batch is swept instead, at each of ``--sides``:
the direct path pays once per call for its ``[T, T]`` matrices, so it needs a large enough batch; the table
gives, per grid, the smallest batch from which it is faster (``DIRECT_TOKENS_PER_IMAGE`` in
``vitlab/mixers/hyena2d.py``).

    python tools/bench_long_conv.py --out benchmarks/long_conv.md
    python tools/bench_long_conv.py --sides 7,14,20 --batches 1,4,16,64 --out benchmarks/long_conv_batch.md
    python tools/bench_long_conv.py --sides 4,8 --repeats 1          # a quick smoke run
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys

import torch

from vitlab.report import emit_report
from vitlab.timing import time_call

PATHS = ("direct", "fft")


def measure(side: int, *, dim: int, tokens: int, repeats: int, device: torch.device,
            dtype: torch.dtype) -> dict[str, float]:
    """Median milliseconds of fwd+bwd and fwd for each path at one grid size."""
    from vitlab.mixers import Hyena2D
    from vitlab.models import TokenLayout

    torch.manual_seed(0)
    mixer = Hyena2D(dim, order=2, filter_hidden=64, device=device, dtype=dtype)
    layout = TokenLayout(side, side, 0, 0)
    batch = max(tokens // (side * side), 1)
    x = torch.randn(batch, side * side, dim, device=device, dtype=dtype)
    xg = x.clone().requires_grad_(True)

    def train_step():
        mixer.train()
        mixer(xg, layout).sum().backward()

    def infer():
        mixer.eval()
        with torch.no_grad():
            mixer(x, layout)

    times: dict[str, list[float]] = {f"{p} {k}": [] for p in PATHS for k in ("fwd+bwd", "fwd")}
    for rep in range(repeats + 1):  # the first round warms up (and fills the eval filter cache)
        for path in PATHS:
            mixer.long_conv = path
            t_train, t_infer = time_call(train_step, device), time_call(infer, device)
            if rep:
                times[f"{path} fwd+bwd"].append(t_train)
                times[f"{path} fwd"].append(t_infer)
    return {k: 1e3 * statistics.median(v) for k, v in times.items()} | {"batch": batch}


def crossover(rows: list[dict], winner: str, loser: str, key: str) -> int | None:
    """Smallest ``row[key]`` (rows in increasing ``key``) from which ``row[winner] < row[loser]`` holds at it
    and at every larger row measured; None when it does not hold at the largest."""
    best = None
    for row in reversed(rows):
        if row[winner] < row[loser]:
            best = row[key]
        else:
            break
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sides", default="4,6,7,8,10,12,14,16,18,20,24,28")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--tokens", type=int, default=16384, help="tokens per batch (batch = tokens // side^2)")
    parser.add_argument("--batches", default=None, help="sweep these batch sizes at every side instead")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--out", default=None, help="write the Markdown table here")
    args = parser.parse_args(argv)
    from vitlab.engine.mfu import matmul_gflops

    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    gflops = matmul_gflops(device)
    rows = []
    batches = [int(b) for b in args.batches.split(",")] if args.batches else [None]
    for side in (int(s) for s in args.sides.split(",")):
        for batch in batches:
            tokens = batch * side * side if batch else args.tokens
            row = {"side": side, "tokens": side * side} | measure(side, dim=args.dim, tokens=tokens,
                                                                     repeats=args.repeats, device=device, dtype=dtype)
            rows.append(row)
            print(f"{side}x{side} ({side * side} tokens, batch {row['batch']}): " + ", ".join(
                f"{k} {row[k]:.2f} ms" for k in (f"{p} {m}" for m in ("fwd+bwd", "fwd") for p in PATHS)), flush=True)
    name = platform.processor() or platform.machine()
    per_batch = f"batches {args.batches}" if args.batches else f"~{args.tokens} tokens per batch"
    lines = [
        "# Hyena 2D long convolution: direct against FFT",
        "",
        f"`python tools/bench_long_conv.py {' '.join(argv if argv is not None else sys.argv[1:])}`: device "
        f"{device.type} ({name}, {torch.get_num_threads()} threads, fp32 matmul {gflops:.0f} GFLOP/s measured "
        f"now), dtype {args.dtype}, width {args.dim}, order 2, {per_batch}, median of "
        f"{args.repeats} interleaved repeats. One mixer; fwd+bwd in train mode, fwd in eval mode (filter cached).",
        "",
        "| grid | tokens | batch | direct fwd+bwd (ms) | FFT fwd+bwd (ms) | FFT/direct | direct fwd (ms) | FFT fwd (ms) | FFT/direct |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['side']}x{r['side']} | {r['tokens']} | {r['batch']} | {r['direct fwd+bwd']:.2f} | "
            f"{r['fft fwd+bwd']:.2f} | {r['fft fwd+bwd'] / r['direct fwd+bwd']:.2f}x | {r['direct fwd']:.2f} | "
            f"{r['fft fwd']:.2f} | {r['fft fwd'] / r['direct fwd']:.2f}x |")
    lines.append("")
    if args.batches:
        for side in dict.fromkeys(r["side"] for r in rows):
            side_rows = [r for r in rows if r["side"] == side]
            b = crossover(side_rows, "direct fwd+bwd", "fft fwd+bwd", "batch")
            lines.append(f"{side}x{side} ({side * side} tokens): direct faster (fwd+bwd) from batch {b}." if b
                         else f"{side}x{side} ({side * side} tokens): FFT faster at the largest batch measured.")
    else:
        for kind in ("fwd+bwd", "fwd"):
            c = crossover(rows, f"fft {kind}", f"direct {kind}", "tokens")
            lines.append(f"Crossover ({kind}): FFT faster from {c} tokens." if c is not None
                         else f"Crossover ({kind}): direct faster at every size measured.")
    report = "\n".join(lines)
    emit_report(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
