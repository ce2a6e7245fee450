"""Activation memory per block type and token count, with and without activation checkpointing; and the
largest token count a ViT-S-width hybrid trains at in a memory budget.

1. Measured: one block of each type (A = attention, R = 2D-RoPE attention, H = Hyena 2D; the blocks of
   ``configs/models/hybrid_small_p16.py`` at ``--dim``, built by ``tools/bench_mixers.py``) runs forward
   in train mode on real tensors, one image, a square patch grid (no CLS or registers), and
   :class:`vitlab.memory.SavedTensors` counts the bytes autograd saves for its backward (distinct
   storages, parameters excluded): exact and deterministic, so it runs on CPU. "Checkpointed" runs the
   block through non-reentrant ``torch.utils.checkpoint`` as ``HybridViT`` does, which keeps only the
   block's input. On CUDA the peak memory of the block's forward + backward above its input is measured too.
2. Planned: the whole ``"HR" * 6`` ViT-S-width hybrid (``configs/models/hybrid_small_p16.py``, patch 16) in a
   classification step at ``--batch-size`` per device, ``--precision``, through :func:`vitlab.memory.plan_memory`
   (fake tensors: the same count on every size without allocating it), for growing images; the largest
   grid whose plan fits ``--budget-gib`` with and without ``train.activation_checkpointing=full``.

    python tools/bench_memory.py --out benchmarks/memory.md
    python tools/bench_memory.py --device cuda --max-tokens 65536 --out benchmarks/memory_gpu.md
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import torch
from omegaconf import OmegaConf

from vitlab.report import emit_report

ROOT = Path(__file__).resolve().parents[1]
SIDES = (14, 28, 56, 80, 112, 160, 256)  # 196 to 65,536 tokens
PLAN_SIDES = (14, 28, 42, 56, 70, 84, 98, 112, 128, 144, 160, 192, 224, 256)
TYPES = ("A", "R", "H")
MiB, GiB = 2**20, 2**30


def _bench_mixers():
    spec = importlib.util.spec_from_file_location("bench_mixers", ROOT / "tools" / "bench_mixers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def block_memory(blk: torch.nn.Module, side: int, dim: int, device: torch.device, checkpointed: bool) -> dict:
    """Bytes ``blk`` saves for backward on one ``side x side`` image, and on CUDA its peak above the input."""
    from vitlab.memory import SavedTensors
    from vitlab.models import TokenLayout

    layout = TokenLayout(side, side, 0, 0)
    x = torch.randn(1, side * side, dim, device=device).requires_grad_()
    run = (lambda: torch.utils.checkpoint.checkpoint(blk, x, layout, use_reentrant=False)) if checkpointed \
        else (lambda: blk(x, layout))
    blk.train()
    with SavedTensors(exclude=[*blk.parameters(), *blk.buffers()]) as saved:
        out = run()
    out.sum().backward()
    row = {"saved": saved.total}
    if device.type == "cuda":
        del out
        blk.zero_grad(set_to_none=True)
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        run().sum().backward()
        torch.cuda.synchronize(device)
        row["peak"] = torch.cuda.max_memory_allocated(device) - base
    blk.zero_grad(set_to_none=True)
    return row


def measure(args) -> list[dict]:
    device = torch.device(args.device)
    torch.manual_seed(0)
    blocks = _bench_mixers().build_blocks(args.dim, args.num_heads, device, torch.float32)
    rows = []
    for side in (s for s in SIDES if s * s <= args.max_tokens):
        row = {"tokens": side * side, "grid": f"{side}x{side}"}
        for t in TYPES:
            for ck in (False, True):
                for key, value in block_memory(blocks[t], side, args.dim, device, ck).items():
                    row[f"{t} {key}{' ckpt' if ck else ''}"] = value
        rows.append(row)
        print(" ".join(f"{k}={v / MiB:.1f}MiB" if isinstance(v, int) and k != "tokens" else f"{k}={v}"
                       for k, v in row.items()), file=sys.stderr, flush=True)
    return rows


def hybrid_config(side: int, batch_size: int, checkpointing: str):
    """A classification run of the ViT-S-width hybrid on ``16 * side`` px images (no transform: the
    plan's example batch is a blank image of the model's size)."""
    from vitlab.config import L, load_config, typed_sections
    from vitlab.tasks import ClassificationTask

    model = load_config(ROOT / "configs" / "models" / "hybrid_small_p16.py").model
    model.image_size = 16 * side
    return typed_sections(OmegaConf.create({
        "model": model,
        "task": L(ClassificationTask)(),
        "data": {"train": None, "batch_size": batch_size},
        "optim": {"optimizer": L(torch.optim.AdamW)(), "lr": 1e-3},
        "train": {"activation_checkpointing": checkpointing},
    }))


def plan(args) -> list[dict]:
    from vitlab.memory import plan_memory

    rows = []
    for side in (s for s in PLAN_SIDES if s * s <= args.max_plan_tokens):
        row = {"tokens": side * side, "grid": f"{side}x{side}"}
        for ck in ("none", "full"):
            p = plan_memory(hybrid_config(side, args.batch_size, ck), precision=args.precision)
            row[ck] = p.total
            row[f"{ck} activations"] = p.parts["activations (saved for backward)"] + p.parts.get(
                "a checkpointed block recomputed in backward", 0)
        rows.append(row)
        print(f"plan {row['grid']}: none {row['none'] / GiB:.2f} GiB, full {row['full'] / GiB:.2f} GiB",
              file=sys.stderr, flush=True)
    return rows


def largest(rows: list[dict], key: str, budget: float) -> dict | None:
    """The largest planned grid whose ``key`` total fits ``budget`` bytes (totals grow with the grid)."""
    fitting = [r for r in rows if r[key] <= budget]
    return fitting[-1] if fitting else None


def to_markdown(measured: list[dict], planned: list[dict], args) -> str:
    device = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "cpu"
    cuda = args.device.startswith("cuda")
    head = ["tokens", "grid"] + [f"{t} (MiB)" for t in TYPES] + [f"{t} ckpt (MiB)" for t in TYPES] + ["H / R"]
    if cuda:
        head += [f"{t} peak (MiB)" for t in TYPES] + [f"{t} ckpt peak (MiB)" for t in TYPES]
    lines = [
        "# Activation memory: per block type, and the largest hybrid that fits",
        "",
        f"`python tools/bench_memory.py {' '.join(sys.argv[1:])}`",
        "",
        "## Bytes one block saves for backward, per image",
        "",
        f"Device {device}, float32, width {args.dim}, {args.num_heads} heads, one image, a square grid without "
        "CLS or registers; measured with `saved_tensors_hooks` (distinct storages, parameters excluded). "
        "A = attention, R = 2D-RoPE attention, H = Hyena 2D (order 2); \"ckpt\": the block under "
        "non-reentrant activation checkpointing, which keeps its input only and recomputes the rest in backward.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for r in measured:
        cells = [str(r["tokens"]), r["grid"]] + [f"{r[f'{t} saved'] / MiB:.2f}" for t in TYPES]
        cells += [f"{r[f'{t} saved ckpt'] / MiB:.2f}" for t in TYPES] + [f"{r['H saved'] / r['R saved']:.2f}"]
        if cuda:
            cells += [f"{r[f'{t} peak'] / MiB:.1f}" for t in TYPES] + [f"{r[f'{t} peak ckpt'] / MiB:.1f}" for t in TYPES]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        f"## The ViT-S-width `\"HR\" * 6` hybrid: planned memory per device, batch {args.batch_size}, {args.precision}",
        "",
        "`configs/models/hybrid_small_p16.py` (12 blocks, width 384, patch 16, 4 registers) in a classification "
        "step with AdamW, planned by `vitlab.memory.plan_memory` (what `vitlab flops --memory` prints): parameters, "
        "gradients, AdamW state, buffers and activations (with checkpointing: the kept inputs plus one block "
        "recomputed in backward).",
        "",
        "| tokens | grid | image (px) | total, none (GiB) | activations, none (GiB) | total, full (GiB) "
        "| activations, full (GiB) | full / none |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in planned:
        side = int(r["grid"].split("x")[0])
        lines.append(f"| {r['tokens']} | {r['grid']} | {16 * side} | {r['none'] / GiB:.2f} | "
                     f"{r['none activations'] / GiB:.2f} | {r['full'] / GiB:.2f} | {r['full activations'] / GiB:.2f} "
                     f"| {r['full'] / r['none']:.3f} |")
    lines.append("")
    budget = args.budget_gib * GiB
    for ck in ("none", "full"):
        best = largest(planned, ck, budget)
        what = "without checkpointing" if ck == "none" else "with `train.activation_checkpointing=full`"
        lines.append(f"In {args.budget_gib:g} GiB, {what}: the largest planned grid is "
                     + (f"{best['grid']} ({best['tokens']} tokens)." if best else "none of the planned grids."))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--max-tokens", type=int, default=None, help="measured blocks: default 65536 on CUDA, 12544 on CPU")
    parser.add_argument("--max-plan-tokens", type=int, default=65536, help="planned hybrid: the largest grid")
    parser.add_argument("--dim", type=int, default=384, help="block width (ViT-S)")
    parser.add_argument("--num-heads", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=32, help="images per device of the planned hybrid")
    parser.add_argument("--precision", default="bf16", choices=("fp32", "bf16", "fp16"), help="of the planned hybrid")
    parser.add_argument("--budget-gib", type=float, default=78.0, help="device memory (an H100 holds about 78 GiB)")
    parser.add_argument("--out", default=None, help="markdown file to write (e.g. benchmarks/memory.md)")
    args = parser.parse_args(argv)
    args.max_tokens = args.max_tokens or (65536 if args.device.startswith("cuda") else 12544)
    if args.max_tokens < SIDES[0] ** 2 or args.max_plan_tokens < PLAN_SIDES[0] ** 2:
        parser.error(f"--max-tokens and --max-plan-tokens must be >= {SIDES[0] ** 2}")
    md = to_markdown(measure(args), plan(args), args)
    emit_report(md, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
