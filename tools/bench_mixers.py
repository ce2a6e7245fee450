"""Time one block of each mixer type against the token count: where does Hyena 2D overtake attention?

Blocks (as in ``configs/models/hybrid_small_p16.py``, at width ``--dim``): A = attention, R = 2D-RoPE
attention, H = Hyena 2D. Token counts are square patch grids, 14^2 = 196 up to 256^2 = 65,536 (no CLS
or registers, so every grid is whole rows for Hyena), capped by ``--max-tokens``. For each size the
three blocks are timed interleaved (A, R, H, A, R, H, ...) so that drift in the machine's speed hits
all three alike; each number is the median over ``--repeats``. Forward runs in eval mode under
``torch.no_grad`` (Hyena's filter FFT cached, as at inference); forward+backward in train mode.

The crossover is the smallest token count from which H is faster than R at that size and every larger
one (fwd+bwd, and fwd separately). Hyena's goal on GPU (issue 12): faster than SDPA attention from
<= 16k tokens; nvSubquadratic found attention faster up to ~16k and Hyena winning from ~65k.

    python tools/bench_mixers.py --device cuda --dtype bfloat16 --out benchmarks/mixers.md
    python tools/bench_mixers.py --max-tokens 784 --repeats 1          # a quick CPU smoke run
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from vitlab.report import emit_report

SIDES = (14, 28, 56, 112, 256)
TYPES = ("A", "R", "H")


def build_blocks(dim: int, num_heads: int, device: torch.device, dtype: torch.dtype) -> dict[str, torch.nn.Module]:
    from vitlab.config import L, build
    from vitlab.layers import LayerNorm, Mlp, RotaryEmbedding2D
    from vitlab.mixers import Attention, Hyena2D
    from vitlab.models import Block

    def block(mixer):  # the blocks of configs/models/hybrid_small_p16.py
        cfg = L(Block)(mixer=mixer, ffn=L(Mlp)(ratio=4.0), norm=L(LayerNorm)(eps=1e-6), layer_scale_init=1e-5)
        return build(cfg, dim=dim, device=device, dtype=dtype)

    return {
        "A": block(L(Attention)(num_heads=num_heads)),
        "R": block(L(Attention)(num_heads=num_heads, rope=L(RotaryEmbedding2D)(base=100.0))),
        "H": block(L(Hyena2D)(order=2, filter_hidden=64)),
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _forward(blk, x, layout):
    blk.eval()
    with torch.no_grad():
        return blk(x, layout)


def _forward_backward(blk, x, layout):
    blk.train()
    x = x.detach().requires_grad_(True)
    blk(x, layout).float().sum().backward()
    blk.zero_grad(set_to_none=True)


def _time(fn, device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


def bench(args) -> list[dict]:
    from vitlab.models import TokenLayout

    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    torch.manual_seed(0)
    blocks = build_blocks(args.dim, args.num_heads, device, dtype)
    rows = []
    for side in (s for s in SIDES if s * s <= args.max_tokens):
        layout = TokenLayout(side, side, 0, 0)
        x = torch.randn(args.batch_size, side * side, args.dim, device=device, dtype=dtype)
        times: dict[tuple[str, str], list[float]] = {(t, m): [] for t in TYPES for m in ("fwd", "fwd+bwd")}
        for t in TYPES:  # warm-up: kernels compiled, caches filled, allocator grown
            _forward(blocks[t], x, layout)
            _forward_backward(blocks[t], x, layout)
        for _ in range(args.repeats):
            for t in TYPES:
                blk = blocks[t]
                times[t, "fwd"].append(_time(lambda: _forward(blk, x, layout), device))  # noqa: B023
                times[t, "fwd+bwd"].append(_time(lambda: _forward_backward(blk, x, layout), device))  # noqa: B023
        row = {"tokens": side * side, "grid": f"{side}x{side}"}
        row |= {f"{t} {m}": statistics.median(v) * 1e3 for (t, m), v in times.items()}
        rows.append(row)
        print(" ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()),
              file=sys.stderr, flush=True)
    return rows


def crossover(rows: list[dict], mode: str) -> int | None:
    """Smallest token count from which H beats R at every measured size (None: never)."""
    found = None
    for row in reversed(rows):
        if row[f"H {mode}"] < row[f"R {mode}"]:
            found = row["tokens"]
        else:
            break
    return found


def to_markdown(rows: list[dict], args) -> str:
    device = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "cpu"
    head = ["tokens", "grid"] + [f"{t} {m} (ms)" for m in ("fwd", "fwd+bwd") for t in TYPES] + ["H/R fwd+bwd"]
    lines = [
        "# One block per mixer type vs token count",
        "",
        (f"`python tools/bench_mixers.py {' '.join(sys.argv[1:])}`: device {device}, dtype {args.dtype}, "
         f"width {args.dim}, {args.num_heads} heads, batch {args.batch_size}, median of {args.repeats} "
         "interleaved repeats. A = attention, R = 2D-RoPE attention, H = Hyena 2D (order 2)."),
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for r in rows:
        cells = [str(r["tokens"]), r["grid"]] + [f"{r[f'{t} {m}']:.2f}" for m in ("fwd", "fwd+bwd") for t in TYPES]
        cells.append(f"{r['H fwd+bwd'] / r['R fwd+bwd']:.2f}x")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for mode in ("fwd+bwd", "fwd"):
        c = crossover(rows, mode)
        lines.append(f"Crossover ({mode}): H faster than R from {c} tokens." if c else
                     f"Crossover ({mode}): H not faster than R up to {rows[-1]['tokens']} tokens.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"],
                        help="default: bfloat16 on CUDA, float32 on CPU")
    parser.add_argument("--max-tokens", type=int, default=None, help="default: 65536 on CUDA, 3136 on CPU")
    parser.add_argument("--dim", type=int, default=384, help="block width (ViT-S)")
    parser.add_argument("--num-heads", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=None, help="markdown file to write (e.g. benchmarks/mixers.md)")
    args = parser.parse_args(argv)
    cuda = args.device.startswith("cuda")
    args.dtype = args.dtype or ("bfloat16" if cuda else "float32")
    args.max_tokens = args.max_tokens or (65536 if cuda else 3136)
    if args.max_tokens < SIDES[0] ** 2:
        parser.error(f"--max-tokens must be >= {SIDES[0] ** 2}")
    rows = bench(args)
    md = to_markdown(rows, args)
    emit_report(md, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
