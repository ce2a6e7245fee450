"""``vitlab bench``: throughput and memory of a vitlab config against the equivalent timm model.

Both models run in the same process, interleaved (vitlab, timm, vitlab, timm, ...), and each
reports the median over repeats, so machine noise hits both alike; the ratio is what to read.
Inference is ``model(x)`` under ``torch.inference_mode``; a training step is forward, cross-entropy,
backward and an AdamW step. Memory: on CUDA the peak allocated memory of a training step; on CPU
the bytes autograd saves for the backward (the activation memory of a training step).
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch
from torch import nn

__all__ = ["benchmark", "add_arguments", "run"]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _train_step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> None:
    loss = nn.functional.cross_entropy(model(x).float(), y)
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


def _infer(model: nn.Module, x: torch.Tensor) -> None:
    with torch.inference_mode():
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


def _memory(model: nn.Module, x: torch.Tensor, y: torch.Tensor, opt) -> int:
    if x.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(x.device)
        _train_step(model, opt, x, y)
        return torch.cuda.max_memory_allocated(x.device)
    return _activation_bytes(model, x)


def benchmark(models: dict[str, nn.Module], *, batch_size: int = 32, image_size: int = 224, repeats: int = 5,
              warmup: int = 1, train: bool = True, device: str = "cpu", dtype: torch.dtype = torch.float32,
              log: Callable[[str], None] = print) -> dict[str, dict[str, float]]:
    """Median images/s (inference and training step) and memory of each model, measured interleaved."""
    dev = torch.device(device)
    x = torch.randn(batch_size, 3, image_size, image_size, device=dev, dtype=dtype)
    y = torch.randint(0, 10, (batch_size,), device=dev)
    opts = {}
    for name, m in models.items():
        m.to(dev, dtype)
        opts[name] = torch.optim.AdamW(m.parameters(), lr=1e-4)
    tasks = [("infer", lambda m, n: _infer(m.eval(), x))]
    if train:
        tasks.append(("train", lambda m, n: _train_step(m.train(), opts[n], x, y)))
    results: dict[str, dict[str, float]] = {name: {} for name in models}
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
            results[name][f"{kind}_img_s"] = batch_size / statistics.median(times[name])
    if train:
        for name, m in models.items():
            results[name]["train_memory_mb"] = _memory(m.train(), x, y, opts[name]) / 2**20
    return results


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="config file defining `model`")
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--timm", metavar="NAME", help="timm model to compare with, e.g. vit_small_patch16_224")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--no-train", action="store_true", help="time inference only")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")


def run(args: argparse.Namespace) -> int:
    from vitlab.config import apply_overrides, instantiate, load_config

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(args.config)
    apply_overrides(cfg, args.overrides)
    models = {"vitlab": instantiate(cfg.model)}
    if args.timm:
        import timm

        models["timm"] = timm.create_model(args.timm, pretrained=False, num_classes=models["vitlab"].num_classes)
    dtype = getattr(torch, args.dtype)
    print(f"device {args.device}, {args.dtype}, batch {args.batch_size}, {args.image_size}px, "
          f"{torch.get_num_threads()} threads, median of {args.repeats}")
    res = benchmark(models, batch_size=args.batch_size, image_size=args.image_size, repeats=args.repeats,
                    warmup=args.warmup, train=not args.no_train, device=args.device, dtype=dtype)
    cols = [k for k in ("infer_img_s", "train_img_s", "train_memory_mb") if k in res["vitlab"]]
    print(f"{'model':>8} " + " ".join(f"{c:>16}" for c in cols))
    for name, r in res.items():
        print(f"{name:>8} " + " ".join(f"{r[c]:>16.2f}" for c in cols))
    if "timm" in res:
        for c in cols:
            ratio = res["vitlab"][c] / res["timm"][c]
            print(f"ratio vitlab/timm {c}: {ratio:.3f}" + ("  (lower is better)" if "memory" in c else ""))
    return 0
