"""``vitlab bench``: throughput, achieved TFLOP/s, MFU and memory of a vitlab config against the
equivalent timm model, eager and compiled.

Every variant (vitlab, timm; each eager and, with ``--compile``, compiled) runs in the same process,
interleaved (vitlab, timm, vitlab, timm, ...), and each reports the median over repeats, so machine
noise hits all alike; the ratios are what to read. Inference is ``model(x)`` under
``torch.inference_mode``; a training step is forward, cross-entropy, backward and an AdamW step.
``--dtype bfloat16`` runs under autocast with float32 weights, as training does.

TFLOP/s are the vitlab model's analytic FLOPs (:meth:`HybridViT.flop_count`, the counter the FLOP
tests check against ``FlopCounterMode``) x images per second: the forward for inference, forward +
backward for a training step (the loss and the optimizer are not counted). The timm peer is the same
architecture and is credited with the same FLOPs, so its MFU compares speed only. MFU divides by the
device's dense peak (:mod:`vitlab.engine.mfu`'s table, or ``--peak-tflops``; a CPU has MFU only with
``--peak-tflops``). Memory: on CUDA the peak allocated memory of a training step; on CPU the bytes
autograd saves for the backward (eager variants only).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import statistics
import sys
import time
from typing import Callable

import torch
from torch import nn

from vitlab.engine.mfu import mfu, peak_tflops, tflops

__all__ = ["benchmark", "add_arguments", "run", "format_table"]

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float16": torch.float16, "fp16": torch.float16}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    return contextlib.nullcontext() if dtype == torch.float32 else torch.autocast(device.type, dtype=dtype)


def _train_step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, dtype) -> None:
    with _autocast(x.device, dtype):
        loss = nn.functional.cross_entropy(model(x).float(), y)
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


def _infer(model: nn.Module, x: torch.Tensor, dtype) -> None:
    with torch.inference_mode(), _autocast(x.device, dtype):
        model(x)


def _time(fn: Callable[[], None], device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def _activation_bytes(model: nn.Module, x: torch.Tensor) -> int:
    total = 0

    def pack(t: torch.Tensor):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x).float().sum()
    return total


def _memory(model: nn.Module, x: torch.Tensor, y: torch.Tensor, opt, dtype, compiled: bool) -> float | None:
    if x.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(x.device)
        _train_step(model, opt, x, y, dtype)
        return torch.cuda.max_memory_allocated(x.device) / 2**20
    return None if compiled else _activation_bytes(model, x) / 2**20


def with_compiled(models: dict[str, nn.Module]) -> dict[str, nn.Module]:
    """Each model eager and compiled (a copy, ``nn.Module.compile`` of the whole network), interleaved."""
    out = {}
    for name, model in models.items():
        out[name] = model
        out[f"{name}+compile"] = copy.deepcopy(model)
        out[f"{name}+compile"].compile()
    return out


def benchmark(models: dict[str, nn.Module], *, batch_size: int = 32, image_size: int = 224, repeats: int = 5,
              warmup: int = 1, train: bool = True, device: str = "cpu", dtype: torch.dtype = torch.float32,
              flops: dict[str, int] | None = None, peak: float | None = None,
              log: Callable[[str], None] = print) -> dict[str, dict[str, float | None]]:
    """Median images/s (inference, training step), TFLOP/s, MFU and memory of each model, interleaved.

    Args:
        models: name -> network taking [B, 3, image_size, image_size] (names ending ``+compile`` are
            compiled ones: no CPU activation memory for them).
        flops: ``{"infer": forward FLOPs per image, "train": forward + backward}``; None: no TFLOP/s.
        peak: the device's peak TFLOP/s in ``dtype``; None: no MFU.
        dtype: float32, or bfloat16 / float16 under autocast (weights stay float32).
    """
    dev = torch.device(device)
    x = torch.randn(batch_size, 3, image_size, image_size, device=dev)
    y = torch.randint(0, 10, (batch_size,), device=dev)
    opts = {}
    for name, m in models.items():
        m.to(dev)
        opts[name] = torch.optim.AdamW(m.parameters(), lr=1e-4)
    tasks = [("infer", lambda m, n: _infer(m.eval(), x, dtype))]
    if train:
        tasks.append(("train", lambda m, n: _train_step(m.train(), opts[n], x, y, dtype)))
    results: dict[str, dict[str, float | None]] = {name: {} for name in models}
    for kind, fn in tasks:
        times: dict[str, list[float]] = {name: [] for name in models}
        for r in range(warmup + repeats):
            for name, m in models.items():
                t = _time(lambda: fn(m, name), dev)
                if r >= warmup:
                    times[name].append(t)
            log(f"  {kind} round {r + 1}/{warmup + repeats}: " + ", ".join(
                f"{n} {batch_size / (times[n][-1] if times[n] else t):.2f} img/s" for n in models))
        for name in models:
            rate = batch_size / statistics.median(times[name])
            achieved = tflops(flops[kind], rate) if flops else None
            results[name] |= {f"{kind}_img_s": rate, f"{kind}_tflops": achieved,
                              f"{kind}_mfu": mfu(achieved, peak) if achieved is not None else None}
    if train:
        for name, m in models.items():
            results[name]["train_memory_mb"] = _memory(m.train(), x, y, opts[name], dtype, name.endswith("+compile"))
    return results


COLUMNS = [("infer_img_s", "infer img/s", ".2f"), ("infer_tflops", "infer TFLOP/s", ".3f"),
           ("infer_mfu", "infer MFU", ".1%"), ("train_img_s", "train img/s", ".2f"),
           ("train_tflops", "train TFLOP/s", ".3f"), ("train_mfu", "train MFU", ".1%"),
           ("train_memory_mb", "train MB", ".0f")]


def format_table(results: dict[str, dict[str, float | None]]) -> str:
    """A markdown table: one row per model, the columns ``benchmark`` filled (``-`` for none)."""
    cols = [c for c in COLUMNS if any(c[0] in r for r in results.values())]
    lines = ["| model | " + " | ".join(c[1] for c in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, r in results.items():
        cells = [format(r[k], fmt) if r.get(k) is not None else "-" for k, _, fmt in cols]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="config file defining `model`")
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--timm", metavar="NAME", help="timm model to compare with, e.g. vit_small_patch16_224")
    parser.add_argument("--compile", action="store_true", help="also time each model compiled (torch.compile)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first (compiling happens here)")
    parser.add_argument("--no-train", action="store_true", help="time inference only")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=sorted(DTYPES), help="bf16/fp16: autocast")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="the device's dense peak TFLOP/s in --dtype (default: vitlab.engine.mfu's table; "
                             "a CPU has MFU only with this)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")


def run(args: argparse.Namespace) -> int:
    from vitlab.config import apply_overrides, instantiate, load_config

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(args.config)
    apply_overrides(cfg, args.overrides)
    models = {"vitlab": instantiate(cfg.model)}
    size = (args.image_size, args.image_size)
    flops = {mode: models["vitlab"].flop_count(inference=mode == "infer", image_size=size) for mode in ("infer", "train")}
    if args.timm:
        import timm

        models["timm"] = timm.create_model(args.timm, pretrained=False, num_classes=models["vitlab"].num_classes,
                                           img_size=args.image_size)
    if args.compile:
        models = with_compiled(models)
    dtype, dev = DTYPES[args.dtype], torch.device(args.device)
    peak = peak_tflops(dev, dtype, args.peak_tflops)
    device_name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    log = (lambda s: print(s, file=sys.stderr)) if args.json else print
    log(f"device {device_name}, {args.dtype}, batch {args.batch_size}, {args.image_size}px, "
        f"{torch.get_num_threads()} threads, median of {args.repeats}; "
        f"{flops['infer'] / 1e9:.3f} GFLOPs/image forward, {flops['train'] / 1e9:.3f} forward + backward; "
        f"peak {peak if peak else 'unknown'} TFLOP/s")
    res = benchmark(models, batch_size=args.batch_size, image_size=args.image_size, repeats=args.repeats,
                    warmup=args.warmup, train=not args.no_train, device=args.device, dtype=dtype, flops=flops,
                    peak=peak, log=log)
    if args.json:
        json.dump({"config": args.config, "overrides": list(args.overrides), "device": device_name,
                   "torch": torch.__version__, "dtype": str(dtype).removeprefix("torch."),
                   "batch_size": args.batch_size, "image_size": args.image_size, "repeats": args.repeats,
                   "flops_per_image": flops, "peak_tflops": peak, "models": res}, sys.stdout)
        sys.stdout.write("\n")
        return 0
    print(format_table(res))
    for name in res:
        if name != "vitlab" and "vitlab" in res:
            for key in ("infer_img_s", "train_img_s"):
                if key in res[name]:
                    print(f"ratio vitlab/{name} {key}: {res['vitlab'][key] / res[name][key]:.3f}")
    if "vitlab+compile" in res:
        for key in ("infer_img_s", "train_img_s"):
            if key in res["vitlab"]:
                print(f"compiled/eager vitlab {key}: {res['vitlab+compile'][key] / res['vitlab'][key]:.3f}")
    return 0
