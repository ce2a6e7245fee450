"""``vitlab eval knn|linear [key=value ...] --checkpoint CKPT [--data CONFIG] [--readout R]``.

Data-config overrides (``data.val.limit=1000``) follow the protocol, before the options.

The model is rebuilt from the checkpoint's config (training runs and converted DINOv3 weights both
store it), its head dropped, and its frozen features extracted for the ``train`` and ``val`` datasets
of the data config (the checkpoint's own ``data`` unless ``--data`` names a config file), both with the
eval transform. Results are printed and written as JSON next to the checkpoint (or to ``--output``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("protocol", choices=["knn", "linear"], help="k-NN vote or linear probe")
    parser.add_argument("--checkpoint", required=True, help="vitlab checkpoint (.pt) with 'model' and 'config'")
    parser.add_argument("--data", default=None, help="config file defining 'data' (default: the checkpoint's)")
    parser.add_argument("--readout", default=None, choices=["cls", "gap", "register_concat", "cls+gap", "registers"],
                        help="feature readout (default: the model's own)")
    parser.add_argument("--ks", default="10,20", help="k values for knn (comma-separated)")
    parser.add_argument("--temperature", type=float, default=0.07, help="knn vote temperature (DINO: 0.07)")
    parser.add_argument("--epochs", type=int, default=20, help="linear-probe epochs")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--output", default=None, help="JSON file for the results")
    parser.add_argument("overrides", nargs="*", help="overrides of the data config, e.g. data.val.limit=1000")


def run(args: argparse.Namespace) -> int:
    import torch
    from omegaconf import OmegaConf

    from vitlab.config import apply_overrides, load_config, typed_sections
    from vitlab.data import build_dataset, build_loader
    from vitlab.engine.checkpoint import build_model_from_checkpoint
    from vitlab.eval.features import extract_features
    from vitlab.eval.knn import knn_eval
    from vitlab.eval.linear import linear_probe

    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    model, ckpt_cfg = build_model_from_checkpoint(args.checkpoint, num_classes=0)
    model.to(device)
    cfg = load_config(args.data) if args.data else typed_sections(OmegaConf.create({"data": ckpt_cfg.get("data")}))
    if cfg.get("data") is None:
        raise SystemExit(f"{args.checkpoint} holds no data config; pass --data CONFIG")
    apply_overrides(cfg, args.overrides)
    features = {}
    for split in ("train", "val"):
        dataset = build_dataset(cfg.data, split, train=False)
        loader, sampler = build_loader(dataset, batch_size=cfg.data.eval_batch_size or cfg.data.batch_size,
                                       seed=0, shuffle=False, drop_last=False,
                                       num_workers=cfg.data.num_workers)
        sampler.set_epoch(0)
        autocast = torch.bfloat16 if device.type == "cuda" else None
        features[split] = extract_features(model, loader, readout=args.readout, device=device, autocast_dtype=autocast)
    (train_x, train_y), (val_x, val_y) = features["train"], features["val"]
    if args.protocol == "knn":
        results = knn_eval(train_x, train_y, val_x, val_y, ks=[int(k) for k in args.ks.split(",")],
                           temperature=args.temperature)
    else:
        results = linear_probe(train_x, train_y, val_x, val_y, epochs=args.epochs)
    results |= {"readout": args.readout or "model", "checkpoint": str(args.checkpoint),
                "train_samples": len(train_y), "val_samples": len(val_y)}
    out = Path(args.output) if args.output else Path(args.checkpoint).with_suffix(f".{args.protocol}.json")
    out.write_text(json.dumps(results, indent=2) + "\n")
    for key, value in results.items():
        print(f"{key}: {value:.2f}" if isinstance(value, float) else f"{key}: {value}")
    print(f"written to {out}")
    return 0
