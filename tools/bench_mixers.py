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

Each token count runs in a fresh worker process (``--_worker``), so a measurement that runs out of memory
or time costs its own table cell, not the run (a run to 12,544 tokens on a 23 GiB CPU machine was once
ended by the kernel's OOM killer: attention's backward holds 12,544^2 scores per head). One process per
token count, not per (token count, type): the types of a size stay interleaved in one process, so the
numbers are the ones a single process measured before. A measurement is one cell, (type, fwd or fwd+bwd):
on CPU the worker's address space is capped at ``--max-memory-gib`` (``RLIMIT_AS``; default 80% of RAM;
torch's import alone reserves ~3.5 GiB of it here), so an allocation over the cap raises inside the
worker, the cell becomes ``OOM`` and the other cells go on in the same process; on CUDA the cap is the
caching allocator's memory fraction (default none: a CUDA OOM is caught the same way). A worker that
dies (``killed (SIGKILL)``: on Linux usually the OOM killer; ``error (exit N)``: traceback on stderr) or
whose cell's warm-up and repeats together exceed ``--timeout-s`` (``timeout``; default none) costs the
cell it was running; the size reruns without it. A cell that failed is not run at larger sizes
(``skipped``). Ratios and GFLOP/s of a failed cell read ``n/a``; the report ends with the list of
failed cells and why.

The crossover of a type is the smallest token count from which it is faster than R at that size and
every larger one (fwd+bwd, and fwd separately). A size where the type or R was not measured is left
out of the comparison (neither faster nor slower), and the sentence names it. Hyena's goal on GPU
(issue 12): faster than SDPA attention from <= 16k tokens; nvSubquadratic found attention faster up
to ~16k and Hyena winning from ~65k.

    python tools/bench_mixers.py --device cuda --dtype bfloat16 --out benchmarks/mixers.md
    python tools/bench_mixers.py --max-tokens 12544 --repeats 3 --timeout-s 900 --out benchmarks/mixers.md
    python tools/bench_mixers.py --max-tokens 784 --repeats 1          # a quick CPU smoke run
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import queue
import shlex
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch

import vitlab
from vitlab.report import emit_report
from vitlab.timing import time_call

SIDES = (14, 28, 56, 112, 256)
TYPES = ("A", "R", "H", "S", "V", "L", "N", "C")
MODES = ("fwd", "fwd+bwd")
GiB = 2**30
EVENT = "@bench "  # the worker's stdout lines that carry an event (JSON) for the parent


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


def _is_oom(err: BaseException) -> bool:
    """An allocation that failed: over the address-space cap on CPU, or out of device memory."""
    text = str(err)
    return isinstance(err, MemoryError) or isinstance(err, RuntimeError) and any(
        s in text for s in ("out of memory", "not enough memory", "can't allocate memory", "bad_alloc"))


def _fault(kind: str, max_memory_gib: float) -> None:
    """Test hook (``--_fault``): ``oom`` allocates past the cap (1 PiB without one), ``kill`` is a SIGKILL."""
    if kind == "oom":
        torch.empty(int((max_memory_gib or 2**20) * GiB) + GiB, dtype=torch.uint8)
    elif kind == "kill":
        os.kill(os.getpid(), signal.SIGKILL)


def worker(spec: dict) -> int:
    """Time ``spec["cells"]`` ("A fwd", "A fwd+bwd", ...) at one token count, interleaved; events on stdout.

    Events: ``begin`` / ``end`` around every call (the parent charges the time to the cell, for
    ``--timeout-s``, and blames the running cell if the process dies), ``failed`` for a cell whose
    allocation failed (dropped from the later rounds), and ``done`` with the median milliseconds.
    """
    from vitlab.models import TokenLayout

    def emit(**event):
        print(EVENT + json.dumps(event), flush=True)

    device, dtype, cap = torch.device(spec["device"]), getattr(torch, spec["dtype"]), spec["max_memory_gib"]
    if cap and device.type == "cuda":  # RLIMIT_AS would refuse the CUDA context's address-space reservation
        index = torch.cuda.current_device() if device.index is None else device.index  # "cuda" has no index
        total = torch.cuda.get_device_properties(index).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, cap * GiB / total), index)
    elif cap:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (int(cap * GiB), int(cap * GiB)))
    side, cells = spec["side"], spec["cells"]
    torch.manual_seed(0)
    blocks = build_blocks(spec["dim"], spec["num_heads"], device, dtype)
    layout = TokenLayout(side, side, 0, 0)
    x = torch.randn(spec["batch_size"], side * side, spec["dim"], device=device, dtype=dtype)
    faults = dict(f.rsplit(" ", 1) for f in spec["faults"])  # "196 A fwd+bwd" -> "oom"
    calls = {"fwd": _forward, "fwd+bwd": _forward_backward}
    failed: set[str] = set()

    def call(cell: str, phase: str) -> float | None:
        t, mode = cell.split(" ")
        emit(begin=cell, phase=phase)
        try:
            if f"{side * side} {cell}" in faults:
                _fault(faults[f"{side * side} {cell}"], cap)
            seconds = time_call(lambda: calls[mode](blocks[t], x, layout), device)
        except Exception as err:
            if not _is_oom(err):
                raise
            failed.add(cell)
            emit(failed=cell, why="OOM", detail=str(err).strip().splitlines()[0][:200])
            seconds = None
        if seconds is None:  # give the failed cell's memory back before the next one
            blocks[t].zero_grad(set_to_none=True)
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
        emit(end=cell)
        return seconds

    for cell in cells:  # warm-up: kernels compiled, caches filled, allocator grown
        call(cell, "warm-up")
    times: dict[str, list[float]] = {cell: [] for cell in cells}
    for i in range(spec["repeats"]):
        for cell in (c for c in cells if c not in failed):
            seconds = call(cell, f"repeat {i + 1}/{spec['repeats']}")
            if seconds is not None:
                times[cell].append(seconds)
    emit(done={cell: statistics.median(v) * 1e3 for cell, v in times.items() if cell not in failed})
    return 0


def run_worker(cmd: list[str], timeout_s: float | None,
               say: Callable[[str], None] = lambda line: None) -> tuple[dict, dict, str | None]:
    """Run one worker command to its end; ``say`` gets a progress line per warm-up call and round.

    Returns the median milliseconds per cell, the failed cells (cell -> (cell text, why)), and the cell
    that was running when the process died or ran out of time (None if it finished): that cell's entry
    in the failed cells is ``killed (SIG...)``, ``error (exit N)`` or ``timeout``.
    """
    env = dict(os.environ)  # the worker imports the vitlab this process imported
    root = str(Path(vitlab.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([root, env["PYTHONPATH"]]) if env.get("PYTHONPATH") else root
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    lines: queue.Queue[str | None] = queue.Queue()

    def read():
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    charged: dict[str, float] = {}  # seconds each cell has run, warm-up and repeats
    failed: dict[str, tuple[str, str]] = {}
    done, running, since, last_phase = None, None, 0.0, None
    try:
        while True:
            wait = None if timeout_s is None or running is None else \
                max(0.0, timeout_s - charged.get(running, 0.0) - (time.monotonic() - since))
            try:
                line = lines.get(timeout=wait)
            except queue.Empty:
                proc.kill()
                proc.wait()
                failed[running] = ("timeout", f"warm-up and repeats took over {timeout_s:g} s (--timeout-s)")
                return {}, failed, running
            if line is None:
                break
            if not line.startswith(EVENT):
                print(line, end="", file=sys.stderr)
                continue
            event, now = json.loads(line[len(EVENT):]), time.monotonic()
            if "begin" in event:
                running, since = event["begin"], now
                if event["phase"] != last_phase or event["phase"] == "warm-up":
                    say(f"{event['phase']} {running}" if event["phase"] == "warm-up" else event["phase"])
                last_phase = event["phase"]
            elif "end" in event:
                charged[running] = charged.get(running, 0.0) + now - since
                running = None
            elif "failed" in event:
                failed[event["failed"]] = (event["why"], event["detail"])
                say(f"{event['failed']}: {event['why']} ({event['detail']})")
            elif "done" in event:
                done = event["done"]
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    if done is not None:  # every cell measured; a crash on the way out costs nothing
        return done, failed, None
    why = (f"killed ({signal.Signals(-proc.returncode).name})" if proc.returncode < 0
           else f"error (exit {proc.returncode})")
    if running is None:
        raise RuntimeError(f"a worker ended outside any measurement: {why}; command: {' '.join(cmd)}")
    detail = ("the process died by a signal; SIGKILL on Linux is usually the kernel's OOM killer"
              if proc.returncode < 0 else "the process failed; its traceback is on stderr")
    failed[running] = (why, detail)
    return {}, failed, running


def bench(args) -> list[dict]:
    """One row per token count: each cell's median ms (a str if it failed), analytic FLOPs, and ``why``."""
    from vitlab.models import TokenLayout

    types = [t for t in TYPES if t in args.types]
    flop_blocks = build_blocks(args.dim, args.num_heads, torch.device("meta"), getattr(torch, args.dtype))
    failed_at: dict[str, int] = {}  # cell -> the token count it failed at
    rows = []
    for side in (s for s in SIDES if s * s <= args.max_tokens):
        n, layout = side * side, TokenLayout(side, side, 0, 0)
        row = {"tokens": n, "grid": f"{side}x{side}", "why": {}}
        for cell, at in failed_at.items():
            row[cell], row["why"][cell] = "skipped", f"not run: it failed at {at} tokens"
        cells = [f"{t} {m}" for t in types for m in MODES]
        todo = [c for c in cells if c not in failed_at]

        def say(line: str, n: int = n) -> None:
            print(f"{n} tokens: {line}", file=sys.stderr, flush=True)

        while todo:
            spec = {"side": side, "cells": todo, "dim": args.dim, "num_heads": args.num_heads,
                    "batch_size": args.batch_size, "repeats": args.repeats, "device": args.device,
                    "dtype": args.dtype, "max_memory_gib": args.max_memory_gib, "faults": args._fault or []}
            done, failed, died = run_worker([sys.executable, str(Path(__file__).resolve()), "--_worker",
                                             json.dumps(spec)], args.timeout_s, say)
            for cell, (text, why) in failed.items():
                row[cell], row["why"][cell] = text, why
                failed_at[cell] = n
            todo = [c for c in todo if c not in failed]
            if died is None:
                row |= done
                break
            say(f"{died}: {failed[died][0]}; the other cells run again in a fresh process")
        row = {"tokens": n, "grid": row["grid"]} | {c: row[c] for c in cells} | {"why": row["why"]}
        for t, blk in flop_blocks.items():
            if t in types:
                fwd = blk.flop_count(n, layout, args.batch_size)
                row[f"{t} flops"] = fwd
                row[f"{t} train flops"] = fwd + blk.backward_flop_count(n, layout, args.batch_size)
        rows.append(row)
        print(" ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()
                       if "flops" not in k and k != "why"), file=sys.stderr, flush=True)
    return rows


def _measured(value) -> bool:
    return not isinstance(value, str)  # a failed cell holds its text: "OOM", "timeout", ...


def crossover(rows: list[dict], mode: str, kind: str = "H") -> int | None:
    """Smallest token count from which ``kind`` beats R at every size where both were measured (None: never).

    A size where either failed is neither a win nor a loss: it is left out, never counted as faster.
    """
    found = None
    for row in reversed(rows):
        mine, rope = row[f"{kind} {mode}"], row[f"R {mode}"]
        if not (_measured(mine) and _measured(rope)):
            continue
        if mine < rope:
            found = row["tokens"]
        else:
            break
    return found


def _crossover_line(rows: list[dict], mode: str, t: str) -> str:
    compared = [r["tokens"] for r in rows if _measured(r[f"{t} {mode}"]) and _measured(r[f"R {mode}"])]
    c = crossover(rows, mode, t)
    if not compared:
        line = f"Crossover ({mode}): {t} not compared with R"
    elif c:
        line = f"Crossover ({mode}): {t} faster than R from {c} tokens"
    else:
        line = f"Crossover ({mode}): {t} not faster than R up to {compared[-1]} tokens"
    left_out = [", ".join([f"{r['tokens']} tokens"] + [f"{k} {r[f'{k} {mode}']}" for k in (t, "R")
                                                       if not _measured(r[f"{k} {mode}"])])
                for r in rows if r["tokens"] not in compared]
    return line + (f" (left out: {'; '.join(left_out)})." if left_out else ".")


def to_markdown(rows: list[dict], args) -> str:
    device = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "cpu"
    types = [t for t in TYPES if t in args.types]
    names = {"A": "attention", "R": "2D-RoPE attention", "H": "Hyena 2D (order 2)", "S": "Mamba 2D (bidirectional)",
             "V": "Mamba 2D (cross scan)", "L": "gated linear attention (GLA 2D)",
             "N": "neighborhood attention (7x7 window, RoPE)", "C": "gated depthwise convolution (MambaOut, 7x7)"}
    lines = [
        "# One block per mixer type vs token count",
        "",
        (f"`python tools/bench_mixers.py {shlex.join(sys.argv[1:])}`: device {device}, dtype {args.dtype}, "
         f"width {args.dim}, {args.num_heads} heads, batch {args.batch_size}, median of {args.repeats} "
         f"interleaved repeats; fp32 matmul {args.matmul_gflops:.0f} GFLOP/s (1024-square, measured before). "
         + ", ".join(f"{t} = {names[t]}" for t in types) + "."),
        "",
    ]

    def ms(v):
        return f"{v:.2f}" if _measured(v) else v

    def per(a, b, scale=1.0, fmt="{:.2f}x"):
        return fmt.format(a / b / scale) if _measured(a) and _measured(b) else "n/a"

    for mode, key in (("fwd+bwd", "train flops"), ("fwd", "flops")):
        head = ["tokens", "grid"] + [f"{t} (ms)" for t in types] + [f"{t} / R" for t in types if t != "R"]
        lines += [f"## {mode}: milliseconds, and time against RoPE attention's", "",
                  "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in rows:
            cells = [str(r["tokens"]), r["grid"]] + [ms(r[f"{t} {mode}"]) for t in types]
            cells += [per(r[f"{t} {mode}"], r[f"R {mode}"]) for t in types if t != "R" and "R" in types]
            lines.append("| " + " | ".join(cells) + " |")
        head = ["tokens"] + [f"{t} GFLOPs" for t in types] + [f"{t} GFLOP/s" for t in types]
        lines += ["", f"{mode}: analytic FLOPs of the block and the rate achieved.", "",
                  "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in rows:
            cells = [str(r["tokens"])] + [f"{r[f'{t} {key}'] / 1e9:.3f}" for t in types]
            cells += [per(r[f"{t} {key}"], r[f"{t} {mode}"], 1e6, "{:.1f}") for t in types]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        if "R" in types:
            lines += [_crossover_line(rows, mode, t) for t in types if t != "R"]
            lines.append("")
    failures = [(r["tokens"], cell, r[cell], why) for r in rows for cell, why in r["why"].items()]
    if failures:
        cap = (f"{args.max_memory_gib:g} GiB of " + ("device memory" if device != "cpu" else "address space")
               if args.max_memory_gib else "no memory cap")
        timeout = f"--timeout-s {args.timeout_s:g} s per cell" if args.timeout_s else "no timeout"
        lines += ["## Not measured", "",
                  (f"Each token count ran in a fresh process ({cap}, {timeout}); these cells failed "
                   "there, and a cell that failed is not run at larger sizes. Their ratios and GFLOP/s read "
                   "n/a, and the crossovers leave them out."), ""]
        lines += [f"- {n} tokens, {cell}: {text}: {why}" for n, cell, text, why in sorted(failures)]
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
    parser.add_argument("--max-memory-gib", type=float, default=None,
                        help="memory cap of each measuring process (0: none); CPU: address space "
                             "(RLIMIT_AS), default 80%% of RAM; CUDA: the device memory torch may allocate, "
                             "default none")
    parser.add_argument("--timeout-s", type=float, default=None,
                        help="most seconds one cell (type, fwd or fwd+bwd) may take at one size, warm-up and "
                             "repeats together (default: no limit)")
    parser.add_argument("--_worker", default=None, help=argparse.SUPPRESS)  # JSON spec: measure one size
    # tests only: "196 A fwd+bwd oom" (or "... kill") makes that cell fail
    parser.add_argument("--_fault", action="append", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._worker:
        return worker(json.loads(args._worker))
    cuda = args.device.startswith("cuda")
    args.dtype = args.dtype or ("bfloat16" if cuda else "float32")
    args.max_tokens = args.max_tokens or (65536 if cuda else 3136)
    if args.max_memory_gib is None:
        ram = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        args.max_memory_gib = 0.0 if cuda else round(0.8 * ram / GiB, 1)
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
