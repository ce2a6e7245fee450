"""Time one DINOv3 training step (student + EMA teacher + heads + losses + AdamW + EMA update) of a
backbone under a recipe, eager and compiled (``train.compile="blocks"``), on random multi-crop batches.

    python tools/bench_ssl_step.py --model configs/models/dinov3_vitl16.py \
        --recipe configs/recipes/dinov3_im1k.py --batch-size 64 --dtype bf16 --compile --json

Reports img/s (images, not crops), achieved TFLOP/s from :meth:`DINOv3Task.train_flops` (the
backbone's analytic FLOPs: student forward + backward on global and local crops, teacher forward
on global crops; heads and losses not counted), MFU against the device's peak
(:mod:`vitlab.engine.mfu`, or ``--peak-tflops``) and peak CUDA memory. Crop sizes and counts are
the recipe's (``data.train_transform``); iBOT masks cover half the patches of half the images.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys

import torch

from vitlab.bench import DTYPES
from vitlab.config import apply_overrides, instantiate, load_config
from vitlab.engine.compile import apply_compile
from vitlab.engine.mfu import mfu, peak_tflops, tflops
from vitlab.ssl.masking import mask_batch_entries
from vitlab.timing import time_call


def random_batch(cfg, batch_size: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Global crops [2B, C, G, G], local crops [L*B, C, l, l] (C: ``model.in_channels``) and iBOT masks [2B, N]
    (with their flat indices [M]) at the recipe's sizes."""
    crops = cfg.data.train_transform
    g, lsize, n_local = crops.global_crops_size, crops.local_crops_size, crops.local_crops_number
    patch, channels = cfg.model.patch_size, cfg.model.get("in_channels", 3)
    n = (g // patch) ** 2
    masks = torch.zeros(2 * batch_size, n, dtype=torch.bool, device=device)
    masks[::2, : n // 2] = True  # half the images, half their patches
    batch = {"global_crops": torch.randn(2 * batch_size, channels, g, g, device=device)} | mask_batch_entries(masks)
    if n_local:
        batch["local_crops"] = torch.randn(n_local * batch_size, channels, lsize, lsize, device=device)
    return batch


def bench_step(cfg, *, compile_mode: str, batch_size: int, device: torch.device, dtype: torch.dtype,
               repeats: int, warmup: int, peak: float | None) -> dict[str, float | None]:
    torch.manual_seed(0)
    task = instantiate(cfg.task, model=cfg.model).to(device)
    task.setup(total_steps=cfg.train.max_steps or 1000)  # the recipe's schedules (warmups) fit its own run
    apply_compile(task, compile_mode)
    params = [p for m in task.trainable_modules().values() for p in m.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, fused=device.type == "cuda")
    batch = random_batch(cfg, batch_size, device)
    autocast = (contextlib.nullcontext() if dtype == torch.float32
                else torch.autocast(device.type, dtype=dtype))
    flops = task.train_flops(batch)
    times = []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    def train_step(step: int) -> None:
        task.before_step(step)
        with autocast:
            loss, _ = task(batch)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        task.after_optimizer_step(step)

    for step in range(warmup + repeats):
        seconds = time_call(lambda: train_step(step), device)  # noqa: B023 (called at once)
        if step >= warmup:
            times.append(seconds)
        print(f"  {compile_mode} step {step + 1}/{warmup + repeats}: {seconds:.3f} s", file=sys.stderr)
    rate = batch_size / statistics.median(times)
    achieved = tflops(flops / batch_size, rate)
    memory = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return {"train_img_s": rate, "train_tflops": achieved, "train_mfu": mfu(achieved, peak),
            "train_memory_mb": memory, "flops_per_image": flops / batch_size}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="configs/models/dinov3_vitl16.py", help="config defining `model`")
    parser.add_argument("--recipe", default="configs/recipes/dinov3_im1k.py", help="config defining `task`, `data`")
    parser.add_argument("overrides", nargs="*", help="overrides of the combined config, e.g. model.num_blocks=2")
    parser.add_argument("--batch-size", type=int, default=64, help="images per step (DINOv3: 64 per GPU)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (compiling happens here)")
    parser.add_argument("--compile", action="store_true", help="also time the step with compiled blocks")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="bf16", choices=sorted(DTYPES))
    parser.add_argument("--peak-tflops", type=float, default=None)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    if device.type == "cpu" and dtype != torch.float32:
        dtype = torch.float32  # CPU autocast to bf16 is orders of magnitude slower without AMX
    cfg = load_config(args.recipe)
    cfg.model = load_config(args.model).model
    apply_overrides(cfg, args.overrides)
    peak = peak_tflops(device, dtype, args.peak_tflops)
    modes = ["off", "blocks"] if args.compile else ["off"]
    res = {("eager" if m == "off" else "compiled"): bench_step(
        cfg, compile_mode=m, batch_size=args.batch_size, device=device, dtype=dtype, repeats=args.repeats,
        warmup=args.warmup, peak=peak) for m in modes}
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    out = {"model": args.model, "recipe": args.recipe, "overrides": list(args.overrides), "device": name,
           "torch": torch.__version__, "dtype": str(dtype).removeprefix("torch."), "batch_size": args.batch_size,
           "peak_tflops": peak, "models": res}
    if args.json:
        print(json.dumps(out))
    else:
        for mode, r in res.items():
            print(f"{mode}: {r['train_img_s']:.1f} img/s, {r['train_tflops']:.2f} TFLOP/s"
                  + (f", MFU {r['train_mfu']:.1%}" if r["train_mfu"] is not None else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
