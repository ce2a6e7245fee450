"""``vitlab sweep``: run a grid of experiments, evaluate each, and summarise them.

    vitlab sweep experiments/ablate_registers_readouts.py
    vitlab sweep CONFIG model.num_registers=0,4,8 model.readout=cls,gap,register_concat eval.readout=model,cls+gap

The grid is the config's ``sweep.grid`` (override strings in hydra's sweep grammar) plus sweep
overrides on the command line. ``eval.*`` keys are evaluation settings, not training ones: runs that
differ only in them share one pretraining. Every training run is ``vitlab train`` in a subprocess
with its own run directory and ``train.resume=auto``; evaluation (weighted k-NN and a linear probe on
frozen features) runs afterwards, in a subprocess too. A run with a ``result.json`` is skipped, an
interrupted one resumes from its last checkpoint, and a failed one is reported in the table without
stopping the others. Output: ``results.csv``, ``results.md`` and ``results.png`` in the sweep folder.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

__all__ = ["plan_runs", "evaluate_run", "write_results", "plot_results", "add_arguments", "run"]


def _run_name(overrides: list[str]) -> str:
    parts = [f"{o.split('=')[0].split('.')[-1]}={o.split('=', 1)[1]}" for o in overrides]
    return re.sub(r"[^A-Za-z0-9_.=+-]", "_", "__".join(parts)) or "base"


def plan_runs(grid: list[str]) -> list[dict[str, Any]]:
    """Training runs of a grid, each with the evaluation settings that share it."""
    from vitlab.config import parse_sweep

    combos = parse_sweep(grid)
    varying = {o.split("=", 1)[0] for c in combos for o in c if any(o not in d for d in combos)}
    runs: dict[str, dict[str, Any]] = {}
    for combo in combos:
        train_ovs = [o for o in combo if not o.lstrip("+").startswith("eval.")]
        evals = {o.split("=", 1)[0].lstrip("+").removeprefix("eval."): o.split("=", 1)[1] for o in combo if o not in train_ovs}
        name = _run_name([o for o in train_ovs if o.split("=", 1)[0] in varying])
        run = runs.setdefault(name, {"name": name, "overrides": train_ovs, "evals": []})
        if evals not in run["evals"]:
            run["evals"].append(evals)
    return list(runs.values())


def evaluate_run(run_dir: str, evals: list[dict[str, str]], linear_epochs: int = 20) -> list[dict[str, Any]]:
    """k-NN (best of k = 10, 20) and linear-probe top-1 of a run's final checkpoint, per evaluation setting.

    The bank / probe-training set is the data config's ``knn_train`` split (``train`` if absent),
    the queries ``val``, both with the eval transform.
    """
    from omegaconf import OmegaConf

    from vitlab.data import build_dataset, build_loader
    from vitlab.engine.checkpoint import build_model_from_checkpoint, latest_checkpoint
    from vitlab.eval import extract_features, knn_eval, linear_probe

    ckpt = latest_checkpoint(Path(run_dir) / "checkpoints")
    if ckpt is None:
        raise FileNotFoundError(f"no checkpoint in {run_dir!r}")
    model, cfg = build_model_from_checkpoint(ckpt, num_classes=0)
    data = cfg.data
    bank_split = "knn_train" if data.knn_train is not None else "train"
    rows = []
    for setting in evals:
        readout = setting.get("readout")
        readout = None if readout in (None, "model") else readout
        feats = {}
        for split in (bank_split, "val"):
            loader, sampler = build_loader(build_dataset(data, split, train=False),
                                           batch_size=data.eval_batch_size or data.batch_size, seed=0,
                                           shuffle=False, drop_last=False)
            sampler.set_epoch(0)
            feats[split] = extract_features(model, loader, readout=readout)
        (bx, by), (vx, vy) = feats[bank_split], feats["val"]
        knn = knn_eval(bx, by, vx, vy, ks=(10, 20))
        linear = linear_probe(bx, by, vx, vy, epochs=linear_epochs)
        rows.append({"eval_readout": setting.get("readout", "model"), "feature_dim": bx.shape[1],
                     # the best k, as the online monitor and DINOv2's k-NN report
                     "knn_top1": max(knn["knn_k10_top1"], knn["knn_k20_top1"]),
                     "knn_k10_top1": knn["knn_k10_top1"], "knn_k20_top1": knn["knn_k20_top1"],
                     "linear_top1": linear["linear_top1"], "checkpoint": str(ckpt),
                     "train_steps": OmegaConf.select(cfg, "train.max_steps")})
    return rows


def _tail(path: Path, lines: int = 5) -> str:
    text = path.read_text(errors="replace").strip().splitlines() if path.exists() else []
    return " | ".join(text[-lines:])


def _execute(run: dict[str, Any], config: str, out: Path, linear_epochs: int) -> dict[str, Any]:
    run_dir = out / run["name"]
    result_file = run_dir / "result.json"
    if result_file.exists():
        result = json.loads(result_file.read_text())
        if result.get("status") == "ok":
            print(f"[sweep] {run['name']}: finished before, skipped", flush=True)
            return result
    run_dir.mkdir(parents=True, exist_ok=True)
    log = run_dir / "train.log"
    cmd = [sys.executable, "-m", "vitlab", "train", config, *run["overrides"],
           f"train.output_dir='{run_dir}'", "train.resume=auto"]
    print(f"[sweep] {run['name']}: training ({' '.join(run['overrides'])})", flush=True)
    with open(log, "a") as fh:
        code = subprocess.call(cmd, stdout=fh, stderr=subprocess.STDOUT)
    result: dict[str, Any] = {"name": run["name"], "overrides": run["overrides"], "rows": []}
    if code != 0:
        result |= {"status": "failed", "error": f"train exited {code}: {_tail(log)}"}
    else:
        print(f"[sweep] {run['name']}: evaluating", flush=True)
        script = ("import json, sys; from vitlab.sweep import evaluate_run; "
                  "print('VITLAB_RESULT ' + json.dumps(evaluate_run(sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]))))")
        proc = subprocess.run([sys.executable, "-c", script, str(run_dir), json.dumps(run["evals"]), str(linear_epochs)],
                              capture_output=True, text=True)
        (run_dir / "eval.log").write_text(proc.stdout + proc.stderr)
        found = [line for line in proc.stdout.splitlines() if line.startswith("VITLAB_RESULT ")]
        if proc.returncode != 0 or not found:
            result |= {"status": "failed", "error": f"eval exited {proc.returncode}: {_tail(run_dir / 'eval.log')}"}
        else:
            result |= {"status": "ok", "rows": json.loads(found[-1].removeprefix("VITLAB_RESULT "))}
    result_file.write_text(json.dumps(result, indent=2) + "\n")
    print(f"[sweep] {run['name']}: {result['status']}", flush=True)
    return result


def _flatten(results: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    keys: list[str] = []
    for r in results:
        for o in r["overrides"]:
            k = o.split("=", 1)[0].lstrip("+")
            if k not in keys and not k.startswith("train.output_dir"):
                keys.append(k)
    # every run of a grid has the same evaluation settings: a failed run gets a row for each, so its
    # table rows and plot bars line up with the others
    planned = list(dict.fromkeys(row["eval_readout"] for r in results if r["status"] == "ok" for row in r["rows"]))
    table = []
    for r in results:
        base = {k: "" for k in keys} | {o.split("=", 1)[0].lstrip("+"): o.split("=", 1)[1] for o in r["overrides"]}
        base["status"] = r["status"]
        if r["status"] != "ok" or not r["rows"]:
            for setting in planned or [""]:
                table.append(base | {"eval_readout": setting, "knn_top1": "", "linear_top1": "",
                                     "error": r.get("error", "")[:200]})
            continue
        for row in r["rows"]:
            knn = max(v for k, v in row.items() if k.startswith("knn_") and k.endswith("_top1"))  # best k
            table.append(base | {"eval_readout": row["eval_readout"], "knn_top1": round(knn, 2),
                                 "linear_top1": round(row["linear_top1"], 2), "error": ""})
    return keys + ["eval_readout", "knn_top1", "linear_top1", "status", "error"], table


def write_results(results: list[dict[str, Any]], out: Path) -> list[Path]:
    """``results.csv``, ``results.md`` and ``results.png`` from the runs' results."""
    columns, table = _flatten(results)
    with open(out / "results.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(table)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row.get(c, "")) for c in columns) + " |" for row in table]
    (out / "results.md").write_text("\n".join(lines) + "\n")
    plot_results(table, columns, out / "results.png")
    return [out / "results.csv", out / "results.md", out / "results.png"]


def plot_results(table: list[dict[str, Any]], columns: list[str], path: Path) -> None:
    """Grouped bars of k-NN and linear top-1: one group per value of the first swept key, one bar per
    combination of the others (readouts, evaluation readout). Failed runs are drawn as hatched stubs."""
    from PIL import Image, ImageDraw

    keys = [c for c in columns if c not in ("knn_top1", "linear_top1", "status", "error")]
    varying = [k for k in keys if len({str(r.get(k, "")) for r in table}) > 1] or keys[:1]
    group_key, bar_keys = varying[0], varying[1:]
    groups = list(dict.fromkeys(str(r.get(group_key, "")) for r in table))

    def bar_of(row: dict[str, Any]) -> str:
        return ", ".join(f"{k.split('.')[-1]}={row.get(k, '')}" for k in bar_keys)

    bars = list(dict.fromkeys(bar_of(r) for r in table))
    palette = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
               (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]
    panel_w, panel_h, margin = max(360, 60 + len(groups) * (len(bars) * 22 + 30)), 300, 50
    img = Image.new("RGB", (2 * panel_w + 20, panel_h + 60 + 16 * len(bars)), "white")
    draw = ImageDraw.Draw(img)
    for p, metric in enumerate(("knn_top1", "linear_top1")):
        x0, y0, y1 = p * (panel_w + 20) + margin, 30, panel_h
        draw.text((x0, 8), f"{metric} (%) by {group_key.split('.')[-1]}", fill="black")
        draw.line([(x0, y0), (x0, y1), (x0 + panel_w - margin - 10, y1)], fill="black")
        for tick in range(0, 101, 20):
            y = y1 - (y1 - y0) * tick / 100
            draw.line([(x0 - 4, y), (x0, y)], fill="black")
            draw.text((x0 - 28, y - 6), str(tick), fill="black")
        for g, group in enumerate(groups):
            gx = x0 + 15 + g * (len(bars) * 22 + 30)
            draw.text((gx, y1 + 5), group[:12], fill="black")
            for b, bar in enumerate(bars):
                row = next((r for r in table if str(r.get(group_key, "")) == group and bar_of(r) == bar), None)
                bx = gx + b * 22
                value = row.get(metric) if row else ""
                if value == "" or value is None:
                    draw.rectangle([bx, y1 - 6, bx + 18, y1], outline=palette[b % 10])  # failed / missing
                    continue
                draw.rectangle([bx, y1 - (y1 - y0) * float(value) / 100, bx + 18, y1], fill=palette[b % 10])
    for b, bar in enumerate(bars):
        y = panel_h + 25 + 16 * b
        draw.rectangle([margin, y, margin + 12, y + 10], fill=palette[b % 10])
        draw.text((margin + 18, y - 1), bar or "run", fill="black")
    img.save(path)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="experiment config; its `sweep.grid` (if any) lists sweep overrides")
    parser.add_argument("overrides", nargs="*", help="more overrides, sweeps included: model.num_registers=0,4")
    parser.add_argument("--out", default=None, help="sweep folder (default: sweep.out or runs/sweeps/<config name>)")
    parser.add_argument("--jobs", type=int, default=1, help="training runs at once")
    parser.add_argument("--linear-epochs", type=int, default=None, help="linear-probe epochs (default: sweep.linear_epochs or 20)")


def run(args: argparse.Namespace) -> int:
    from vitlab.config import load_config

    cfg = load_config(args.config)
    spec = cfg.get("sweep") or {}
    grid = list(spec.get("grid", [])) + list(args.overrides)
    if not grid:
        raise ValueError("nothing to sweep: give sweep.grid in the config or sweep overrides (key=a,b)")
    out = Path(args.out or spec.get("out") or f"runs/sweeps/{Path(args.config).stem}")
    out.mkdir(parents=True, exist_ok=True)
    epochs = args.linear_epochs or spec.get("linear_epochs", 20)
    runs = plan_runs(grid)
    print(f"[sweep] {len(runs)} training runs into {out}", flush=True)
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        results = list(pool.map(lambda r: _execute(r, args.config, out, epochs), runs))
    for path in write_results(results, out):
        print(f"[sweep] wrote {path}")
    print((out / "results.md").read_text())
    failed = [r["name"] for r in results if r["status"] != "ok"]
    if failed:
        print(f"[sweep] {len(failed)} run(s) failed: {', '.join(failed)} (see their train.log / eval.log)")
    return 0
