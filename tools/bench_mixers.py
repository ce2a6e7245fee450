"""Time one block of each mixer type against the token count: where does each overtake attention?

Blocks (as in ``configs/models/hybrid_small_p16.py``, at width ``--dim``, each with the same Mlp(4) FFN
and norms): A = attention, R = 2D-RoPE attention, H = Hyena 2D, S = Mamba 2D (bidirectional scan), V =
Mamba 2D (cross scan), L = gated linear attention (GLA 2D), N = neighborhood attention (7x7 window, RoPE;
NAT's), C = MambaOut's gated depthwise convolution (7x7); ``--types`` picks some. Token counts are
square patch grids, 14^2 = 196 up to 256^2 = 65,536 (no CLS or registers, so every grid is whole rows
for Hyena), capped by ``--max-tokens``. For each size the blocks are timed interleaved (A, R, H, ..., A,
R, H, ...) so that drift in the machine's speed hits all alike; each number is the median over
``--repeats``. Forward runs in eval mode under ``torch.no_grad`` (Hyena's filter cached, as at
inference); forward+backward in train mode. Beside each time: the block's analytic FLOPs
(``flop_count`` / ``backward_flop_count``, cross-checked against ``FlopCounterMode`` by the tests) as
achieved GFLOP/s.

The crossover of a type is the smallest token count from which it is faster than R at that size and
every larger one (fwd+bwd, and fwd separately). Hyena's goal on GPU (issue 12): faster than SDPA
attention from <= 16k tokens; nvSubquadratic found attention faster up to ~16k and Hyena winning from ~65k.

    python tools/bench_mixers.py --device cuda --dtype bfloat16 --out benchmarks/mixers.md
    python tools/bench_mixers.py --max-tokens 784 --repeats 1          # a quick CPU smoke run
"""

from __future__ import annotations

import argparse
import statistics
import sys

import torch

from vitlab.report import emit_report
from vitlab.timing import time_call

SIDES = (14, 28, 56, 112, 256)
TYPES = ("A", "R", "H", "S", "V", "L", "N", "C")


def build_blocks(dim: int, num_heads: int, device: torch.device, dtype: torch.dtype) -> dict[str, torch.nn.Module]:
    from vitlab.config import L, build
    from vitlab.layers import LayerNorm, Mlp, RotaryEmbedding2D
    from vitlab.mixers import GLA2D, Attention, GatedConv, Hyena2D, Mamba2D, NeighborhoodAttention
    from vitlab.models import Block

    def block(mixer):  # the blocks of configs/models/hybrid_small_p16.py
        cfg = L(Block)(mixer_layer=mixer, ffn_layer=L(Mlp)(ratio=4.0), norm_layer=L(LayerNorm)(eps=1e-6), layer_scale_init=1e-5)
        return build(cfg, dim=dim, device=device, dtype=dtype)

    return {
        "A": block(L(Attention)(num_heads=num_heads)),
        "R": block(L(Attention)(num_heads=num_heads, rope_layer=L(RotaryEmbedding2D)(base=100.0))),
        "H": block(L(Hyena2D)(order=2, filter_hidden=64)),
        "S": block(L(Mamba2D)(scan="bidirectional")),
        "V": block(L(Mamba2D)(scan="cross")),
        "L": block(L(GLA2D)(num_heads=num_heads)),
        "N": block(L(NeighborhoodAttention)(num_heads=num_heads, window=7, rope_layer=L(RotaryEmbedding2D)(base=100.0))),
        "C": block(L(GatedConv)(kernel_size=7)),
    }


def _forward(blk, x, layout):
    blk.eval()
    with torch.no_grad():
        return blk(x, layout)


def _forward_backward(blk, x, layout):
    blk.train()
    x = x.detach().requires_grad_(True)
    blk(x, layout).float().sum().backward()
    blk.zero_grad(set_to_none=True)


def bench(args) -> list[dict]:
    from vitlab.models import TokenLayout

    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    torch.manual_seed(0)
    blocks = {t: b for t, b in build_blocks(args.dim, args.num_heads, device, dtype).items() if t in args.types}
    rows = []
    for side in (s for s in SIDES if s * s <= args.max_tokens):
        layout = TokenLayout(side, side, 0, 0)
        x = torch.randn(args.batch_size, side * side, args.dim, device=device, dtype=dtype)
        times: dict[tuple[str, str], list[float]] = {(t, m): [] for t in blocks for m in ("fwd", "fwd+bwd")}
        for blk in blocks.values():  # warm-up: kernels compiled, caches filled, allocator grown
            _forward(blk, x, layout)
            _forward_backward(blk, x, layout)
        for _ in range(args.repeats):
            for t, blk in blocks.items():
                times[t, "fwd"].append(time_call(lambda: _forward(blk, x, layout), device))  # noqa: B023
                times[t, "fwd+bwd"].append(time_call(lambda: _forward_backward(blk, x, layout), device))  # noqa: B023
        row = {"tokens": side * side, "grid": f"{side}x{side}"}
        row |= {f"{t} {m}": statistics.median(v) * 1e3 for (t, m), v in times.items()}
        for t, blk in blocks.items():
            fwd = blk.flop_count(side * side, layout, args.batch_size)
            row[f"{t} flops"] = fwd
            row[f"{t} train flops"] = fwd + blk.backward_flop_count(side * side, layout, args.batch_size)
        rows.append(row)
        print(" ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()
                       if "flops" not in k), file=sys.stderr, flush=True)
    return rows


def crossover(rows: list[dict], mode: str, kind: str = "H") -> int | None:
    """Smallest token count from which ``kind`` beats R at every measured size (None: never)."""
    found = None
    for row in reversed(rows):
        if row[f"{kind} {mode}"] < row[f"R {mode}"]:
            found = row["tokens"]
        else:
            break
    return found


def to_markdown(rows: list[dict], args) -> str:
    device = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "cpu"
    types = [t for t in TYPES if t in args.types]
    names = {"A": "attention", "R": "2D-RoPE attention", "H": "Hyena 2D (order 2)", "S": "Mamba 2D (bidirectional)",
             "V": "Mamba 2D (cross scan)", "L": "gated linear attention (GLA 2D)",
             "N": "neighborhood attention (7x7 window, RoPE)", "C": "gated depthwise convolution (MambaOut, 7x7)"}
    lines = [
        "# One block per mixer type vs token count",
        "",
        (f"`python tools/bench_mixers.py {' '.join(sys.argv[1:])}`: device {device}, dtype {args.dtype}, "
         f"width {args.dim}, {args.num_heads} heads, batch {args.batch_size}, median of {args.repeats} "
         f"interleaved repeats; fp32 matmul {args.matmul_gflops:.0f} GFLOP/s (1024-square, measured before). "
         + ", ".join(f"{t} = {names[t]}" for t in types) + "."),
        "",
    ]
    for mode, key in (("fwd+bwd", "train flops"), ("fwd", "flops")):
        head = ["tokens", "grid"] + [f"{t} (ms)" for t in types] + [f"{t} / R" for t in types if t != "R"]
        lines += [f"## {mode}: milliseconds, and time against RoPE attention's", "",
                  "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in rows:
            cells = [str(r["tokens"]), r["grid"]] + [f"{r[f'{t} {mode}']:.2f}" for t in types]
            cells += [f"{r[f'{t} {mode}'] / r[f'R {mode}']:.2f}x" for t in types if t != "R" and "R" in types]
            lines.append("| " + " | ".join(cells) + " |")
        head = ["tokens"] + [f"{t} GFLOPs" for t in types] + [f"{t} GFLOP/s" for t in types]
        lines += ["", f"{mode}: analytic FLOPs of the block and the rate achieved.", "",
                  "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in rows:
            cells = [str(r["tokens"])] + [f"{r[f'{t} {key}'] / 1e9:.3f}" for t in types]
            cells += [f"{r[f'{t} {key}'] / r[f'{t} {mode}'] / 1e6:.1f}" for t in types]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        if "R" in types:
            for t in (t for t in types if t != "R"):
                c = crossover(rows, mode, t)
                lines.append(f"Crossover ({mode}): {t} faster than R from {c} tokens." if c else
                             f"Crossover ({mode}): {t} not faster than R up to {rows[-1]['tokens']} tokens.")
            lines.append("")
    return "\n".join(lines)


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
    parser.add_argument("--types", default="".join(TYPES), help=f"block letters to time (default {''.join(TYPES)})")
    parser.add_argument("--out", default=None, help="markdown file to write (e.g. benchmarks/mixers.md)")
    args = parser.parse_args(argv)
    cuda = args.device.startswith("cuda")
    args.dtype = args.dtype or ("bfloat16" if cuda else "float32")
    args.max_tokens = args.max_tokens or (65536 if cuda else 3136)
    if args.max_tokens < SIDES[0] ** 2:
        parser.error(f"--max-tokens must be >= {SIDES[0] ** 2}")
    from vitlab.engine.mfu import matmul_gflops

    unknown = sorted(set(args.types) - set(TYPES))
    if unknown:
        parser.error(f"--types: unknown letters {unknown}; known: {''.join(TYPES)}")
    args.matmul_gflops = matmul_gflops(torch.device(args.device))
    rows = bench(args)
    md = to_markdown(rows, args)
    emit_report(md, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
