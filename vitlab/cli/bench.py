"""``vitlab bench CONFIG [key=value ...] [--timm NAME] [--compile]``: throughput, TFLOP/s, MFU and memory of a
config against the equivalent timm model (:mod:`vitlab.bench`)."""

from __future__ import annotations

import argparse
import json
import sys

import torch

from vitlab.bench import DTYPES, benchmark, format_table, with_compiled
from vitlab.config import apply_overrides, instantiate, load_config
from vitlab.engine.mfu import peak_tflops

__all__ = ["add_arguments", "run"]


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
