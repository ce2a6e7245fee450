"""``vitlab eval knn|linear|all|seg --checkpoint CKPT [--init] [--data CONFIG] [key=value ...]``.

The model is rebuilt from the checkpoint's config (training runs and converted DINOv3 weights both
store it), its head dropped, and evaluated under the frozen-feature protocol of
:mod:`vitlab.eval.protocol`: k (or the probe's lr and weight decay) chosen on a validation split
carved from ``data.train``, then ``data.val`` (the test set) scored once with the chosen value.
The protocol's settings are the checkpoint's ``eval`` section (:class:`vitlab.config.EvalConfig`),
overridable like the data config: ``eval.readout=gap``, ``eval.ks=[10,20]``, ``data.val.limit=1000``.
``eval.readout=pixels`` scores the images themselves (the raw-pixel baseline) and ``--init`` the run's
random initialisation, each under the same protocol. Results are printed and written as JSON next to
the checkpoint (or to ``--output``).

``vitlab eval seg`` is the linear segmentation probe of :mod:`vitlab.eval.seg` (settings ``eval.seg_*``;
``data`` must give (image, mask) samples: ``--data``, else the file ``eval.seg_data`` names, else the
checkpoint's own data; e.g. ``--data configs/data/fmnist_scenes.py``): mIoU and
pixel accuracy in the JSON, and the chosen head saved beside it (``.seg.pt``, for ``vitlab viz``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from omegaconf import ListConfig, OmegaConf

from vitlab.config import apply_overrides, eval_config, load_config, typed_sections
from vitlab.engine.distributed import loader_workers
from vitlab.engine.host_memory import keep_freed_memory
from vitlab.eval.protocol import evaluate
from vitlab.eval.seg import seg_probe
from vitlab.eval.tokens import summarise_tokens
from vitlab.weights import build_model_from_checkpoint

__all__ = ["add_arguments", "run", "run_seg", "seg_outputs"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("protocol", choices=["knn", "linear", "all", "seg"],
                        help="k-NN vote, linear probe, both, or the linear segmentation probe")
    parser.add_argument("--checkpoint", required=True, help="vitlab checkpoint (.pt) with 'model' and 'config'")
    parser.add_argument("--init", action="store_true",
                        help="evaluate the run's random initialisation (built with its seed), not the weights")
    parser.add_argument("--data", default=None, help="config file defining 'data' (default: the checkpoint's)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--output", default=None, help="JSON file for the results")
    parser.add_argument("overrides", nargs="*", help="data.* and eval.* overrides, e.g. eval.readout=gap")


def run(args: argparse.Namespace) -> int:
    keep_freed_memory()  # the feature extraction's large activations reuse their pages (host_memory.py)

    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    model, ckpt_cfg = build_model_from_checkpoint(args.checkpoint, init=args.init, num_classes=0)
    model.to(device)
    sections = {o: o.lstrip("+~").split(".", 1)[0] for o in args.overrides}
    bad = [o for o, section in sections.items() if section not in ("data", "eval")]
    if bad:
        raise SystemExit(f"vitlab eval takes data.* and eval.* overrides only, got {bad}")
    protocol = apply_overrides(OmegaConf.create({"eval": eval_config(ckpt_cfg)}),
                               [o for o, section in sections.items() if section == "eval"]).eval
    data_file = args.data or (protocol.seg_data if args.protocol == "seg" else None)
    data = load_config(data_file).get("data") if data_file else ckpt_cfg.get("data")
    if data is None:
        raise SystemExit(f"{data_file or args.checkpoint} holds no data config; pass --data CONFIG")
    cfg = typed_sections(OmegaConf.create({"data": data, "eval": protocol}))
    apply_overrides(cfg, [o for o, section in sections.items() if section == "data"])
    if args.protocol == "seg":
        return run_seg(args, model, cfg, device)
    results = evaluate(model, cfg.data, cfg.eval, args.protocol, device=device,
                       num_workers=loader_workers(cfg.data.num_workers), progress=True)
    results |= {"checkpoint": str(args.checkpoint), "init": args.init,
                "protocol": OmegaConf.to_container(cfg.eval)}
    suffix = f"{'init.' if args.init else ''}{results['readout']}.{args.protocol}.json"
    out = Path(args.output) if args.output else Path(args.checkpoint).with_suffix("." + suffix)
    out.write_text(json.dumps(results, indent=2) + "\n")
    for key, value in results.items():
        if key == "tokens":  # per layer in the JSON; a summary here
            value = ", ".join(f"{k} {v:.4g}" for k, v in summarise_tokens(value).items())
        print(f"{key}: {value:.2f}" if isinstance(value, float) else f"{key}: {value}")
    print(f"written to {out}")
    return 0


def seg_outputs(checkpoint: str, *, init: bool = False, readout: str | None = None, layers: int = 1,
                output: str | None = None) -> tuple[Path, Path]:
    """Where ``vitlab eval seg`` writes its JSON and its head: ``CKPT.[init.]last{layers}.seg.json`` / ``.pt``
    (``pixels`` in place of ``last{layers}`` for the raw-pixel baseline)."""
    name = f"{'init.' if init else ''}{'pixels' if readout == 'pixels' else f'last{layers}'}.seg"
    json_path = Path(output) if output else Path(checkpoint).with_suffix(f".{name}.json")
    return json_path, json_path.with_suffix(".pt")


def run_seg(args: argparse.Namespace, model, cfg, device) -> int:
    results, head = seg_probe(model, cfg.data, cfg.eval, device=device, num_workers=loader_workers(cfg.data.num_workers),
                              progress=True)
    results |= {"checkpoint": str(args.checkpoint), "init": args.init, "protocol": OmegaConf.to_container(cfg.eval)}
    out, head_path = seg_outputs(args.checkpoint, init=args.init, readout=cfg.eval.readout,
                                 layers=cfg.eval.seg_layers, output=args.output)
    out.write_text(json.dumps(results, indent=2) + "\n")
    torch.save({"head": head.state_dict(), "in_dim": head.in_dim, "num_classes": head.num_classes,
                "seg_layers": int(cfg.eval.seg_layers), "readout": cfg.eval.readout, "results": str(out),
                "mean": _listed(OmegaConf.select(cfg.data, "eval_transform.mean")),
                "std": _listed(OmegaConf.select(cfg.data, "eval_transform.std"))}, head_path)
    for key, value in results.items():
        if key == "seg_iou":
            value = " ".join("-" if v != v else f"{v:.1f}" for v in value)  # NaN: a class seen nowhere
        print(f"{key}: {value:.2f}" if isinstance(value, float) else f"{key}: {value}")
    print(f"written to {out} (head: {head_path})")
    return 0


def _listed(value) -> list[float] | None:
    """The eval transform's normalisation as floats (None when it is not ``normalize``): ``vitlab viz`` reuses it."""
    return [float(v) for v in value] if isinstance(value, (list, tuple, ListConfig)) else None
