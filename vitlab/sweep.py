"""``vitlab sweep``: run a grid of experiments over seeds, evaluate each with its baselines, and summarise.

    vitlab sweep experiments/ablate_registers_readouts.py --seeds 3
    vitlab sweep CONFIG model.num_registers=0,4,8 model.readout=cls,gap,register_concat eval.readout=model,cls+gap

The grid is the config's ``sweep.grid`` (override strings in hydra's sweep grammar) plus sweep
overrides on the command line; ``--seeds N`` (or ``sweep.seeds``) runs every configuration with
``train.seed`` = 0 ... N-1. ``eval.*`` keys are evaluation settings (:class:`vitlab.config.EvalConfig`),
not training ones: runs that differ only in them share one pretraining (``eval.readout=model`` is the
readout the run pretrained with). Every training run is ``vitlab train`` in a subprocess with its own
run directory and ``train.resume=auto``; then ``vitlab eval all`` (k-NN and linear probe under the one
protocol of :mod:`vitlab.eval.protocol`: k and the probe's lr / weight decay chosen on a validation
split of the training set, the test set scored once) scores its final checkpoint and, as the
baseline, its own random initialisation (``--init``); raw pixels are scored once per sweep, under the
same protocol. A run with a ``result.json`` is skipped, an interrupted one resumes from its last
checkpoint (and its scoring keeps the evaluations it had written), and a failed one is reported in the table
without stopping the others.

Output in the sweep folder: ``runs.csv`` (one row per training run and evaluation setting),
``results.csv`` / ``results.md`` (one row per configuration: mean +- std over seeds of the pretrained
and the random-init scores, the gain, and whether the gap to the column's best exceeds the spread),
``results.png`` (bars with error bars, random init and raw pixels marked).

Variants (``sweep.variants``: name -> override list, ``[]`` the config as is) are configurations that
differ in several keys at once, e.g. one change at a time from a recipe: each is one configuration,
crossed with the grid and the seeds, named by its name (``lr_2e-3__seed=1``), and tabulated in a
``variant`` column. ``eval.protocols=[monitor]`` scores a run without evaluating it again: the keys of
``eval.monitor_metrics`` from the run's own ``metrics.jsonl`` (a ``val/*`` key's last value, from the
online monitor, with its step-0 value as the random-init baseline; any other key, e.g.
``train/dino_loss``, averaged over the last tenth of its records) and the run's wall time.

    vitlab sweep experiments/ablate_ssl_recipe.py
"""

from __future__ import annotations

import copy
import csv
import difflib
import json
import re
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from vitlab._moved import moved
from vitlab.config import UnknownKeyError, apply_overrides, eval_config, load_config, override_item, parse_sweep
from vitlab.config.overrides import unknown_key_message
from vitlab.engine.checkpoint import latest_checkpoint
from vitlab.engine.logging import read_metrics, tenth_mean
from vitlab.eval.tokens import summarise_tokens
from vitlab.palette import PALETTE

__all__ = ["plan_runs", "evaluate_run", "finished_result", "record_result", "train_overrides", "pixel_baseline",
           "summarise", "summarise_sweep", "write_results", "plot_results", "run_local"]

PROTOCOLS = {"knn": "knn_top1", "linear": "linear_top1", "seg": "seg_miou"}  # eval.protocols -> its table metric
MONITOR = "monitor"  # the protocol that reads the run's metrics.jsonl (eval.monitor_metrics) instead
METRICS = tuple(PROTOCOLS.values())  # in table order
TITLES = {"knn_top1": "k-NN", "linear_top1": "linear", "seg_miou": "seg mIoU"}
SWEEP_KEYS = ("grid", "variants", "seeds", "out")  # the config's `sweep` section
VARIANT_NAME = re.compile(r"[A-Za-z0-9_.+-]+")  # a run folder's name starts with it


def _run_name(overrides: list[str]) -> str:
    parts = [f"{k.split('.')[-1]}={v}" for k, v in map(override_item, overrides)]
    return re.sub(r"[^A-Za-z0-9_.=+-]", "_", "__".join(parts)) or "base"


def plan_runs(grid: list[str], seeds: int = 1, variants: dict[str, list[str]] | None = None
              ) -> list[dict[str, Any]]:
    """Training runs of a grid (times ``variants``, times ``seeds``), each with the evaluation settings that
    share it. A variant's run is named by the variant (then the grid's varying keys and the seed) and
    keeps its overrides apart (``variant_overrides``): they are not table columns."""
    combos = parse_sweep(grid)
    varying = {override_item(o)[0] for c in combos for o in c if any(o not in d for d in combos)}
    runs: dict[str, dict[str, Any]] = {}
    for variant, variant_ovs in (variants or {None: []}).items():
        for combo in combos:
            train_ovs = [o for o in combo if not o.lstrip("+").startswith("eval.")]
            evals = {k.removeprefix("eval."): v for k, v in map(override_item, combo) if k.startswith("eval.")}
            for seed in range(seeds):
                seed_ovs = [f"train.seed={seed}"] if seeds > 1 else []
                changed = [o for o in train_ovs if override_item(o)[0] in varying] + seed_ovs
                name = _run_name(changed)
                if variant is not None:
                    name = f"{variant}__{name}" if changed else variant
                run = runs.setdefault(name, {"name": name, "overrides": train_ovs + seed_ovs, "evals": []})
                if variant is not None:
                    run |= {"variant": variant, "variant_overrides": list(variant_ovs)}
                if evals not in run["evals"]:
                    run["evals"].append(evals)
    return list(runs.values())


def check_variants(cfg: Any, variants: Any, grid: list[str], seeds: int = 1) -> dict[str, list[str]]:
    """``sweep.variants`` as ``{name: [override, ...]}``, each variant applied to ``cfg`` (a copy) to check
    its keys before anything trains.

    Raises:
        ValueError: not a mapping of folder-safe names to override lists; an override that is a sweep, an
            ``eval.*`` / ``launch.*`` setting (the same for every run: give it to the grid), or a key the
            grid or ``--seeds`` also sets; each named with the variant and the override.
        UnknownKeyError: a key ``cfg`` lacks, named with the variant and the closest keys.
    """
    if not isinstance(variants, dict) or not variants:
        raise ValueError(f"sweep.variants={variants!r}: give a mapping of names to override lists, "
                         "e.g. {'base': [], 'lr_2e-3': ['optim.lr.base=2e-3']}")
    grid_keys = {override_item(o)[0] for o in grid} | ({"train.seed"} if seeds > 1 else set())
    out = {}
    for name, overrides in variants.items():
        where = f"sweep.variants.{name}"
        if not isinstance(name, str) or not VARIANT_NAME.fullmatch(name):
            raise ValueError(f"sweep.variants: name {name!r} is not a folder name (letters, digits, _ . + - only)")
        if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
            raise ValueError(f"{where}={overrides!r}: a variant is a list of override strings "
                             "([] for the config as is)")
        for o in overrides:
            key = override_item(o)[0]
            if len(parse_sweep([o])) > 1:
                raise ValueError(f"{where}: {o!r} is a sweep; a variant is one configuration (sweep in sweep.grid "
                                 "or on the command line)")
            if key.startswith(("eval.", "launch.")):
                raise ValueError(f"{where}: {o!r}: eval.* and launch.* settings are the same for every run of a "
                                 "sweep; set them in sweep.grid or on the command line")
            if key in grid_keys:
                raise ValueError(f"{where}: {o!r} sets {key}, which the grid (or --seeds: train.seed) sets too")
        try:
            apply_overrides(copy.deepcopy(cfg), overrides)
        except KeyError as exc:
            raise UnknownKeyError(f"{where}: {exc}") from None
        out[name] = list(overrides)
    return out


def _eval_overrides(setting: dict[str, str]) -> list[str]:
    return [f"eval.{k}={v}" for k, v in setting.items() if not (k == "readout" and v == "model")]


def _vitlab_eval(ckpt: Path, overrides: list[str], out: Path, *extra: str, protocol: str = "all") -> dict[str, Any]:
    """``vitlab eval all`` (or ``seg``) in a subprocess; its ``--output`` JSON. An output left by an earlier
    call for the same checkpoint (a sweep stopped while scoring) is kept, not evaluated again: delete the
    run's ``eval_*.json`` to score it afresh."""
    if out.exists():
        earlier = json.loads(out.read_text())
        if earlier.get("checkpoint") == str(ckpt) and earlier.get("init") == ("--init" in extra):
            print(f"[sweep] {out.parent.name}: {out.name} scored before, kept", flush=True)
            return earlier
    cmd = [sys.executable, "-m", "vitlab", "eval", protocol, "--checkpoint", str(ckpt), *extra, *overrides,
           "--output", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    with open(out.with_suffix(".log"), "w") as fh:
        fh.write(" ".join(cmd) + "\n" + proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise RuntimeError(f"vitlab eval exited {proc.returncode}: {_tail(out.with_suffix('.log'))}")
    return json.loads(out.read_text())


def run_protocol(config: str | Path, setting: dict[str, str] | None = None) -> Any:
    """The evaluation section (:class:`vitlab.config.EvalConfig`) a run of ``config`` (a file or a run's
    ``config.yaml``) is scored with, under an evaluation ``setting`` of the grid.

    Raises:
        ValueError: an unknown protocol, or ``monitor`` without metrics, named with the field.
    """
    protocol = apply_overrides(OmegaConf.create({"eval": eval_config(load_config(config))}),
                               _eval_overrides(setting or {})).eval
    protocols = list(protocol.protocols)
    unknown = [p for p in protocols if p not in (*PROTOCOLS, MONITOR)]
    if unknown or not protocols:
        raise ValueError(f"eval.protocols={protocols}: each must be one of {', '.join([*PROTOCOLS, MONITOR])} "
                         "(at least one)")
    if MONITOR in protocols and not protocol.monitor_metrics:
        raise ValueError("eval.monitor_metrics=[]: the monitor protocol needs at least one metrics.jsonl key, "
                         "e.g. [val/knn_top1]")
    return protocol


def run_protocols(config: str | Path, setting: dict[str, str] | None = None) -> list[str]:
    """The protocols (``eval.protocols``) a run of ``config`` is scored with (see :func:`run_protocol`)."""
    return list(run_protocol(config, setting).protocols)


def read_monitor(run_dir: str | Path, metrics: list[str]) -> dict[str, float]:
    """The ``monitor`` protocol: ``metrics`` from the run's own ``metrics.jsonl``, nothing evaluated again.

    A ``val/*`` metric is its last record's value (the online monitor's final evaluation), and its step-0
    record, where the run evaluated before training (``train.eval_at_start``), is ``init_<metric>``; any
    other metric (``train/dino_loss``) is its mean over the last tenth of its records. ``minutes`` is the
    run's wall time (its last ``wall_s``: evaluations included).

    Raises:
        FileNotFoundError: the run has no ``metrics.jsonl``.
        UnknownKeyError: a metric the run never logged, named with the field and the closest logged keys.
    """
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"no metrics.jsonl in {str(run_dir)!r}")
    records = read_metrics(path)
    out: dict[str, float] = {}
    for metric in metrics:
        logged = [r for r in records if metric in r]
        if not logged:
            keys = sorted({k for r in records for k in r} - {"step", "wall_s"})
            close = difflib.get_close_matches(metric, keys, n=3, cutoff=0.5)
            raise UnknownKeyError(f"eval.monitor_metrics: {metric!r} is not in {str(path)!r}"
                                  + (f"; closest logged keys: {', '.join(close)}" if close else ""))
        if metric.startswith("val/"):
            out[metric] = logged[-1][metric]
            start = [r for r in logged if r["step"] == 0]
            if start:
                out[f"init_{metric}"] = start[0][metric]
        else:
            out[metric] = tenth_mean(logged, metric)
    out["minutes"] = _minutes(records)
    return out


def _minutes(records: list[dict[str, Any]]) -> float:
    """A run's wall time in minutes: its last ``wall_s`` (evaluations included)."""
    return max((r["wall_s"] for r in records if "wall_s" in r), default=0.0) / 60


def evaluate_run(run_dir: str | Path, evals: list[dict[str, str]], rows: list[dict[str, Any]] | None = None
                 ) -> list[dict[str, Any]]:
    """Scores of a run's final checkpoint and of its random initialisation, per evaluation setting, under
    the run's ``eval.protocols``; ``rows`` (an earlier call's result) keep their scores, and only what
    they lack is evaluated. The segmentation probe reads patch tokens, whatever ``eval.readout`` says,
    so it runs once per run and its score is on every row. ``monitor`` evaluates nothing: it reads the
    run's ``metrics.jsonl`` (:func:`read_monitor`), and needs no checkpoint."""
    run_dir = Path(run_dir)
    ckpt = latest_checkpoint(run_dir / "checkpoints")
    done = {row["eval_readout"]: row for row in rows or []}
    seg: dict[str, Any] = {}
    out = []
    for setting in evals:
        protocol = run_protocol(run_dir / "config.yaml", setting)
        protocols = list(protocol.protocols)
        readout = setting.get("readout", "model")
        row = dict(done.get(readout, {"eval_readout": readout}))
        if MONITOR in protocols:  # first: a metric the run never logged fails before any evaluation runs
            row |= read_monitor(run_dir, list(protocol.monitor_metrics))
        if set(PROTOCOLS) & set(protocols):
            if ckpt is None:
                raise FileNotFoundError(f"no checkpoint in {str(run_dir)!r}")
            row.setdefault("checkpoint", str(ckpt))
        tag = _run_name(_eval_overrides(setting)) if setting else "model"
        if {"knn", "linear"} & set(protocols) and "knn_top1" not in row:
            trained = _vitlab_eval(ckpt, _eval_overrides(setting), run_dir / f"eval_{tag}.json")
            init = _vitlab_eval(ckpt, _eval_overrides(setting), run_dir / f"eval_{tag}_init.json", "--init")
            tokens = {f"tok_{k}": v for k, v in summarise_tokens(trained["tokens"]).items()} if trained.get("tokens") else {}
            row |= {"feature_dim": trained["feature_dim"], "knn_k": trained["knn_k"], "linear_lr": trained["linear_lr"],
                    **{m: trained[m] for m in ("knn_top1", "linear_top1")},
                    **{f"init_{m}": init[m] for m in ("knn_top1", "linear_top1")}, **tokens}
        if "seg" in protocols and "seg_miou" not in row:
            if not seg:
                ovs = [o for o in _eval_overrides(setting) if not o.startswith("eval.readout=")]
                trained = _vitlab_eval(ckpt, ovs, run_dir / "eval_seg.json", protocol="seg")
                init = _vitlab_eval(ckpt, ovs, run_dir / "eval_seg_init.json", "--init", protocol="seg")
                seg = {"seg_miou": trained["seg_miou"], "init_seg_miou": init["seg_miou"], "seg_lr": trained["seg_lr"],
                       "seg_feature_dim": trained["feature_dim"]}
            row |= seg
        if "seg_feature_dim" in row:
            row.setdefault("feature_dim", row["seg_feature_dim"])
        if (run_dir / "metrics.jsonl").is_file():  # what the run cost, beside what it scored
            row.setdefault("minutes", _minutes(read_metrics(run_dir / "metrics.jsonl")))
        out.append(row)
    return out


def _tail(path: Path, lines: int = 5) -> str:
    text = path.read_text(errors="replace").strip().splitlines() if path.exists() else []
    return " | ".join(text[-lines:])


def _scores(protocol: Any) -> list[str]:
    """The table metrics a result row scored under ``protocol`` (an evaluation section) holds."""
    scores = [PROTOCOLS[p] for p in protocol.protocols if p in PROTOCOLS]
    return scores + (list(protocol.monitor_metrics) if MONITOR in protocol.protocols else [])


def finished_result(run: dict[str, Any], out: Path) -> dict[str, Any] | None:
    """A run's ``result.json`` if it finished with every score its settings ask for (scoring what an
    earlier result lacks, e.g. a protocol added since), else None: the run still has to train."""
    run_dir = out / run["name"]
    result_file = run_dir / "result.json"
    if not result_file.exists():
        return None
    result = json.loads(result_file.read_text())
    if result.get("status") != "ok":
        return None
    wanted = {m for s in run["evals"] for m in _scores(run_protocol(run_dir / "config.yaml", s))}
    if all(m in row for row in result["rows"] for m in wanted):
        print(f"[sweep] {run['name']}: finished before, skipped", flush=True)
        return result
    print(f"[sweep] {run['name']}: finished before; scoring what its result lacks", flush=True)
    try:
        result["rows"] = evaluate_run(run_dir, run["evals"], result["rows"])
    except (RuntimeError, FileNotFoundError, KeyError) as exc:
        result |= {"status": "failed", "error": str(exc)}
    result_file.write_text(json.dumps(result, indent=2) + "\n")
    return result


def record_result(run: dict[str, Any], out: Path, error: str | None = None) -> dict[str, Any]:
    """Score a trained run (``error``: its training failed, and why) and write its ``result.json``: what
    both runners, local and Slurm, leave for the table."""
    run_dir = out / run["name"]
    result: dict[str, Any] = {"name": run["name"], "overrides": run["overrides"], "rows": []}
    if "variant" in run:
        result |= {"variant": run["variant"], "variant_overrides": run["variant_overrides"]}
    if error is not None:
        result |= {"status": "failed", "error": error}
    else:
        print(f"[sweep] {run['name']}: scoring it and its random init", flush=True)
        try:
            result |= {"status": "ok", "rows": evaluate_run(run_dir, run["evals"])}
        except (RuntimeError, FileNotFoundError, KeyError) as exc:
            result |= {"status": "failed", "error": str(exc)}
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def train_overrides(run: dict[str, Any], out: Path) -> list[str]:
    """The overrides of a run's training: its variant's, its grid point, its own folder, and resuming
    whatever it left."""
    return [*run.get("variant_overrides", []), *run["overrides"], f"train.output_dir='{(out / run['name']).resolve()}'",
            "train.resume=auto"]


def _execute(run: dict[str, Any], config: str, out: Path) -> dict[str, Any]:
    """The local runner: ``vitlab train`` in a subprocess, then :func:`record_result`."""
    finished = finished_result(run, out)
    if finished is not None:
        return finished
    run_dir = out / run["name"]
    run_dir.mkdir(parents=True, exist_ok=True)
    log = run_dir / "train.log"
    cmd = [sys.executable, "-m", "vitlab", "train", config, *train_overrides(run, out), "launch.launcher=local"]
    print(f"[sweep] {run['name']}: training ({' '.join(run.get('variant_overrides', []) + run['overrides'])})",
          flush=True)
    with open(log, "a") as fh:
        code = subprocess.call(cmd, stdout=fh, stderr=subprocess.STDOUT)
    result = record_result(run, out, None if code == 0 else f"train exited {code}: {_tail(log)}")
    print(f"[sweep] {run['name']}: {result['status']}", flush=True)
    return result


def pixel_baseline(results: list[dict[str, Any]], out: Path, overrides: list[str]) -> dict[str, Any] | None:
    """Raw pixels under the sweep's protocols (``eval.readout=pixels``), each scored once (``pixels.json``
    keeps them; a protocol added later is scored then); None without a checkpoint, or where the only
    protocol is ``monitor`` (pixels have no training run to read)."""
    ckpt = next((row["checkpoint"] for r in results if r["status"] == "ok" for row in r["rows"] if "checkpoint" in row),
                None)
    if ckpt is None:
        return None
    target = out / "pixels.json"
    pixels = json.loads(target.read_text()) if target.exists() else {"readout": "pixels"}
    setting = {k.removeprefix("eval."): v for k, v in map(override_item, overrides)}
    protocols = [p for p in run_protocols(Path(ckpt).parents[1] / "config.yaml", setting) if p in PROTOCOLS]
    if not protocols:
        return None
    todo = [p for p in protocols if PROTOCOLS[p] not in pixels]
    if not todo:
        return pixels
    print(f"[sweep] raw-pixel baseline ({', '.join(todo)})", flush=True)
    pixel_ovs = [o for o in overrides if not o.startswith("eval.readout")] + ["eval.readout=pixels"]
    if {"knn", "linear"} & set(todo):
        pixels |= _vitlab_eval(Path(ckpt), pixel_ovs, out / "pixels_all.json")
    if "seg" in todo:
        seg = _vitlab_eval(Path(ckpt), pixel_ovs, out / "pixels_seg.json", protocol="seg")
        pixels |= {"seg_miou": seg["seg_miou"], "seg_feature_dim": seg["feature_dim"]}
        pixels.setdefault("feature_dim", seg["feature_dim"])
    target.write_text(json.dumps(pixels, indent=2) + "\n")
    return pixels


def _keys(results: list[dict[str, Any]]) -> list[str]:
    keys: list[str] = []
    for r in results:
        for o in r["overrides"]:
            k = override_item(o)[0]
            if k not in keys and not k.startswith("train.output_dir"):
                keys.append(k)
    return keys


def _flatten(results: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """One row per training run and evaluation setting (the ``runs.csv`` table); a sweep of variants has a
    ``variant`` column first (their overrides are not columns)."""
    keys = (["variant"] if any("variant" in r for r in results) else []) + _keys(results)
    # every run of a grid has the same evaluation settings: a failed run gets a row for each, so its
    # table rows and plot bars line up with the others
    planned = list(dict.fromkeys(row["eval_readout"] for r in results if r["status"] == "ok" for row in r["rows"]))
    tokens = list(dict.fromkeys(k for r in results for row in r["rows"] for k in row if k.startswith("tok_")))
    metrics, levels = _metrics_of(results)
    scores = [*metrics, *(f"init_{m}" for m in metrics), *levels, *tokens]
    digits = {m: 4 if m.startswith("tok_") or (m in levels and m != "minutes") else 2 for m in scores}
    table = []
    for r in results:
        base = {k: "" for k in keys} | dict(map(override_item, r["overrides"]))
        if "variant" in keys:
            base["variant"] = r.get("variant", "")
        base["status"] = r["status"]
        if r["status"] != "ok" or not r["rows"]:
            for setting in planned or [""]:
                table.append(base | {"eval_readout": setting, "feature_dim": ""} | {m: "" for m in scores}
                             | {"error": r.get("error", "")[:200]})
            continue
        for row in r["rows"]:
            table.append(base | {"eval_readout": row["eval_readout"], "feature_dim": row.get("feature_dim") or ""}
                         | {m: round(row[m], digits[m]) if row.get(m) is not None else "" for m in scores}
                         | {"error": ""})
    return keys + ["eval_readout", "feature_dim", *scores, "status", "error"], table


def _metrics_of(results: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """The scores (with a random-init baseline: k-NN, linear, seg, the monitor's ``val/*``) and the levels
    (the monitor's other metrics and the wall time: mean and std only) any run of ``results`` has. k-NN
    and linear where neither is there, so a sweep whose runs all failed still has its columns."""
    seen = list(dict.fromkeys(k for r in results for row in r["rows"] for k in row))
    metrics = [m for m in METRICS if m in seen] + [k for k in seen if k.startswith("val/")]
    levels = [k for k in seen if ("/" in k and not k.startswith(("val/", "init_"))) or k == "minutes"]
    return metrics or ([] if levels else ["knn_top1", "linear_top1"]), levels


def _names_in(columns: list[str]) -> list[str]:
    """The metric names of a ``runs.csv`` (``knn_top1``) or ``results.csv`` (``knn_top1_mean``) column list."""
    if "seeds" in columns:  # results.csv: every metric has a <metric>_mean column
        return [c.removesuffix("_mean") for c in columns if c.endswith("_mean") and not c.startswith("init_")]
    return [c for c in columns if not c.startswith("init_")]


def _metrics_in(columns: list[str]) -> list[str]:
    """The scores of a column list (see :func:`_metrics_of`)."""
    names = _names_in(columns)
    return [m for m in METRICS if m in names] + [m for m in names if m.startswith("val/")]


def _levels_in(columns: list[str]) -> list[str]:
    """The levels of a column list (see :func:`_metrics_of`)."""
    return [m for m in _names_in(columns) if ("/" in m and not m.startswith("val/")) or m == "minutes"]


def _lower_is_better(metric: str) -> bool:
    return metric.endswith("loss")  # val/loss of a classification run; every other score: higher is better


def _mean_std(values: list[float]) -> tuple[float, float | None]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def summarise(columns: list[str], runs: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """One row per configuration (runs equal but for ``train.seed``) and evaluation readout.

    Each score gets its mean and std over the seeds, the random-init baseline's mean (where the runs have
    one), and the gain; ``<metric>_vs_best`` says ``best``, ``n.s.`` (the gap to the column's best is
    within the sum of the two spreads: not significant), ``lower`` (``higher`` for a loss), or ``1 seed``
    (no spread measured). Each level (a monitored training metric, the wall time) gets its mean and std.
    """
    config_keys = [c for c in columns[:columns.index("eval_readout") + 1] if c != "train.seed"]
    metrics, levels = _metrics_in(columns), _levels_in(columns)
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in runs:
        groups.setdefault(tuple(row[k] for k in config_keys), []).append(row)
    table = []
    for key, rows in groups.items():
        ok = [r for r in rows if r["status"] == "ok" and any(r[m] != "" for m in metrics + levels)]
        out = dict(zip(config_keys, key)) | {"feature_dim": rows[0]["feature_dim"], "seeds": len(ok),
                                             "failed": len(rows) - len(ok)}
        for m in metrics:
            scored = [r for r in ok if r[m] != ""]
            out |= {f"{m}_mean": "", f"{m}_std": "", f"init_{m}_mean": "", f"{m}_gain": ""}
            if scored:
                mean, std = _mean_std([float(r[m]) for r in scored])
                out |= {f"{m}_mean": round(mean, 2), f"{m}_std": "" if std is None else round(std, 2)}
                inits = [float(r[f"init_{m}"]) for r in scored if r.get(f"init_{m}", "") != ""]
                if inits:
                    init = statistics.fmean(inits)
                    out |= {f"init_{m}_mean": round(init, 2), f"{m}_gain": round(mean - init, 2)}
        for m in levels:
            values = [float(r[m]) for r in ok if r[m] != ""]
            mean, std = _mean_std(values) if values else ("", None)
            digits = 2 if m == "minutes" else 4
            out |= {f"{m}_mean": round(mean, digits) if values else "",
                    f"{m}_std": "" if std is None else round(std, digits)}
        for t in (c for c in columns if c.startswith("tok_")):
            values = [float(r[t]) for r in ok if r.get(t, "") != ""]
            out[t] = round(statistics.fmean(values), 4) if values else ""
        out["error"] = next((r["error"] for r in rows if r["error"]), "")
        table.append(out)
    for m in metrics:
        sign = -1 if _lower_is_better(m) else 1
        scored = [r for r in table if r[f"{m}_mean"] != ""]
        best = max(scored, key=lambda r: sign * r[f"{m}_mean"], default=None)
        for r in table:
            if r[f"{m}_mean"] == "":
                r[f"{m}_vs_best"] = ""
            elif r is best:
                r[f"{m}_vs_best"] = "best"
            elif r[f"{m}_std"] == "" or best[f"{m}_std"] == "":
                r[f"{m}_vs_best"] = "1 seed"
            else:
                gap = sign * (best[f"{m}_mean"] - r[f"{m}_mean"])
                worse = "higher" if sign < 0 else "lower"
                r[f"{m}_vs_best"] = "n.s." if gap <= r[f"{m}_std"] + best[f"{m}_std"] else worse
    metric_cols = [f"{p}{m}{q}" for m in metrics for p, q in
                   (("", "_mean"), ("", "_std"), ("init_", "_mean"), ("", "_gain"), ("", "_vs_best"))]
    level_cols = [f"{m}{q}" for m in levels for q in ("_mean", "_std")]
    token_cols = [c for c in columns if c.startswith("tok_")]
    return config_keys + ["feature_dim", "seeds", "failed", *metric_cols, *level_cols, *token_cols, "error"], table


def _cell(row: dict[str, Any], m: str, digits: int = 2) -> str:
    if row.get(f"{m}_mean", "") == "":
        return "failed"
    std = row[f"{m}_std"]
    return f"{row[f'{m}_mean']:.{digits}f}" + (f" ± {std:.{digits}f}" if std != "" else "")


def write_results(results: list[dict[str, Any]], out: Path, pixels: dict[str, Any] | None = None) -> list[Path]:
    """``runs.csv``, ``results.csv``, ``results.md`` and ``results.png`` from the runs' results."""
    run_columns, runs = _flatten(results)
    columns, table = summarise(run_columns, runs)
    for name, cols, rows in (("runs.csv", run_columns, runs), ("results.csv", columns, table)):
        with open(out / name, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=cols)
            writer.writeheader()
            writer.writerows(rows)
    keys = columns[:columns.index("feature_dim")]
    tok = [c for c in ("tok_outliers_max", "tok_cls_attn_registers", "tok_norm_patches", "tok_norm_registers")
           if c in columns]
    metrics, levels = _metrics_in(columns), _levels_in(columns)
    width = any(r["feature_dim"] != "" for r in table)  # none where no run was evaluated again (monitor only)
    head = keys + ["width"] * width + ["seeds"] \
        + [f"{TITLES.get(m, m)}{q}" for m in metrics for q in ("", " init", " gain", " vs best")] + levels \
        + [c.removeprefix("tok_") for c in tok]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in table:
        cells = [str(r[k]) for k in keys] + [str(r["feature_dim"])] * width + [str(r["seeds"])]
        for m in metrics:
            cells += [_cell(r, m), str(r[f"init_{m}_mean"]), str(r[f"{m}_gain"]), r[f"{m}_vs_best"]]
        cells += [_cell(r, m, 2 if m == "minutes" else 4) for m in levels] + [str(r[c]) for c in tok]
        lines.append("| " + " | ".join(cells) + " |")
    if pixels is not None:
        cells = ["raw pixels"] + [""] * (len(keys) - 1) + [str(pixels.get("feature_dim", ""))] * width + ["-"]
        for m in metrics:
            cells += [f"{pixels[m]:.2f}" if m in pixels else "", "", "", ""]
        lines.append("| " + " | ".join(cells + [""] * (len(levels) + len(tok))) + " |")
    notes = {"knn_top1": "k-NN (k chosen on the validation split) and linear probe (lr, weight decay chosen there) "
                         "top-1 (%) on the test set.",
             "seg_miou": "`seg mIoU`: the linear segmentation probe's mIoU (%) on the test split of `eval.seg_data`, "
                         "its lr chosen on a validation split of its training scenes."}
    if any(m.startswith("val/") for m in metrics) or set(levels) - {"minutes"}:
        notes["monitor"] = ("`val/*`: the run's own online monitor (its metrics.jsonl), its last evaluation; `init` "
                            "there is its step-0 evaluation (`train.eval_at_start`). Other metrics: mean over the "
                            "last tenth of their logged steps.")
    if "minutes" in levels:
        notes["minutes"] = "`minutes`: the run's training wall time (its online evaluations included, the probes not)."
    lines += ["", " ".join(notes[m] for m in [*metrics, "monitor", "minutes"] if m in notes) + " Mean ± std over seeds; `init`: "
              "the same configuration's random initialisation under the same protocol; `vs best`: `n.s.` where the "
              "gap to the column's best is within the sum of their standard deviations."]
    if tok:
        lines[-1] += (" Token statistics of the pretrained backbone (`vitlab.eval.tokens`, mean over seeds, on the "
                      "first `eval.token_images` validation images): `outliers_max`, the largest fraction over layers "
                      "of patch tokens with a norm above `eval.outlier_factor` x the layer's median; "
                      "`cls_attn_registers`, the share of the CLS token's attention on registers in the last attention "
                      "block; the last layer's mean patch / register token norms.")
    variants = {r["variant"]: r["variant_overrides"] for r in results if "variant" in r}
    if variants:
        lines += ["", "Variants:", ""] + [f"- `{name}`: " + (" ".join(f"`{o}`" for o in ovs) or "the config as is")
                                         for name, ovs in variants.items()]
    (out / "results.md").write_text("\n".join(lines) + "\n")
    plot_results(table, columns, out / "results.png", pixels)
    return [out / "runs.csv", out / "results.csv", out / "results.md", out / "results.png"]


def plot_results(table: list[dict[str, Any]], columns: list[str], path: Path,
                 pixels: dict[str, Any] | None = None) -> None:
    """Grouped bars of each score (k-NN and linear top-1, seg mIoU, the monitor's ``val/*``; mean over seeds,
    std as error bars): one group per value of
    the first swept key, one bar per combination of the others. The random init is a black tick on each
    bar, raw pixels a grey line; failed runs are hollow stubs."""
    from PIL import Image, ImageDraw

    keys = columns[:columns.index("feature_dim")]
    varying = [k for k in keys if len({str(r.get(k, "")) for r in table}) > 1] or keys[:1]
    group_key, bar_keys = varying[0], varying[1:]
    groups = list(dict.fromkeys(str(r.get(group_key, "")) for r in table))

    def bar_of(row: dict[str, Any]) -> str:
        return ", ".join(f"{k.split('.')[-1]}={row.get(k, '')}" for k in bar_keys)

    bars = list(dict.fromkeys(bar_of(r) for r in table))
    panel_w, panel_h, margin = max(360, 60 + len(groups) * (len(bars) * 22 + 30)), 300, 50
    metrics = _metrics_in(columns)
    img = Image.new("RGB", (max(1, len(metrics)) * (panel_w + 20), panel_h + 76 + 16 * len(bars)), "white")
    draw = ImageDraw.Draw(img)
    for p, metric in enumerate(metrics):
        x0, y0, y1 = p * (panel_w + 20) + margin, 30, panel_h
        x_end = x0 + panel_w - margin - 10

        def y_of(value: float) -> float:
            return y1 - (y1 - y0) * value / 100

        draw.text((x0, 8), f"{metric} (%) by {group_key.split('.')[-1]}", fill="black")
        draw.line([(x0, y0), (x0, y1), (x_end, y1)], fill="black")
        for tick in range(0, 101, 20):
            draw.line([(x0 - 4, y_of(tick)), (x0, y_of(tick))], fill="black")
            draw.text((x0 - 28, y_of(tick) - 6), str(tick), fill="black")
        if pixels is not None and metric in pixels:
            y = y_of(pixels[metric])
            for x in range(x0, x_end, 8):
                draw.line([(x, y), (x + 4, y)], fill=(120, 120, 120))
        for g, group in enumerate(groups):
            gx = x0 + 15 + g * (len(bars) * 22 + 30)
            draw.text((gx, y1 + 5), group[:12], fill="black")
            for b, bar in enumerate(bars):
                row = next((r for r in table if str(r.get(group_key, "")) == group and bar_of(r) == bar), None)
                bx = gx + b * 22
                value = row.get(f"{metric}_mean") if row else ""
                if value == "" or value is None:
                    draw.rectangle([bx, y1 - 6, bx + 18, y1], outline=PALETTE[b % len(PALETTE)])  # failed / missing
                    continue
                draw.rectangle([bx, y_of(float(value)), bx + 18, y1], fill=PALETTE[b % len(PALETTE)])
                if row[f"{metric}_std"] != "":
                    lo, hi = float(value) - row[f"{metric}_std"], float(value) + row[f"{metric}_std"]
                    draw.line([(bx + 9, y_of(hi)), (bx + 9, y_of(lo))], fill="black")
                    for v in (lo, hi):
                        draw.line([(bx + 5, y_of(v)), (bx + 13, y_of(v))], fill="black")
                init = row[f"init_{metric}_mean"]
                if init != "":
                    draw.line([(bx, y_of(float(init))), (bx + 18, y_of(float(init)))], fill="black", width=2)
    legend_y = panel_h + 25
    draw.text((margin, legend_y), "black tick: random init" + ("; grey dashes: raw pixels" if pixels else "")
              + "; error bars: std over seeds", fill="black")
    for b, bar in enumerate(bars):
        y = legend_y + 18 + 16 * b
        draw.rectangle([margin, y, margin + 12, y + 10], fill=PALETTE[b % len(PALETTE)])
        draw.text((margin + 18, y - 1), bar or "run", fill="black")
    img.save(path)


def check_sweep(cfg: Any) -> dict[str, Any]:
    """The config's ``sweep`` section as plain containers (empty where it has none).

    Raises:
        UnknownKeyError: a key other than those of :data:`SWEEP_KEYS`, with the closest one.
    """
    node = cfg.get("sweep")
    spec = OmegaConf.to_container(node, resolve=True) if node is not None else {}
    for key in spec:
        if key not in SWEEP_KEYS:
            schema = OmegaConf.create({"sweep": dict.fromkeys(SWEEP_KEYS)})
            raise UnknownKeyError(f"{unknown_key_message(schema, f'sweep.{key}')} (a sweep takes "
                                  f"{', '.join(SWEEP_KEYS)})")
    return spec


def run_local(runs: list[dict[str, Any]], config: str, out: Path, shared_evals: list[str], *, jobs: int = 1) -> int:
    """The local runner: ``jobs`` training runs at once (:func:`_execute` each), the raw-pixel baseline, and the
    tables (the Slurm runner: :func:`vitlab.slurm.sweep_jobs.submit_sweep`)."""
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        results = list(pool.map(lambda r: _execute(r, config, out), runs))
    try:
        pixels = pixel_baseline(results, out, shared_evals)
    except RuntimeError as exc:
        print(f"[sweep] raw-pixel baseline failed: {exc}", flush=True)
        pixels = None
    summarise_sweep(results, out, pixels)
    return 0


def summarise_sweep(results: list[dict[str, Any]], out: Path, pixels: dict[str, Any] | None) -> None:
    """Write and print the tables and the plot of the runs' results (both runners)."""
    for path in write_results(results, out, pixels):
        print(f"[sweep] wrote {path}")
    print((out / "results.md").read_text())
    failed = [r["name"] for r in results if r["status"] != "ok"]
    if failed:
        print(f"[sweep] {len(failed)} run(s) failed: {', '.join(failed)} (see their train.log / eval_*.log)")


# ``vitlab sweep`` itself: :mod:`vitlab.cli.sweep` (the names raise an error naming it, for one release)
__getattr__ = moved(__name__, {"add_arguments": "vitlab.cli.sweep.add_arguments", "run": "vitlab.cli.sweep.run"})
