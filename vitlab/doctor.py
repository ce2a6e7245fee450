"""Why a DINO run's image-level loss sits at ln K, and what to try (``vitlab doctor RUN_DIR``:
:mod:`vitlab.cli.doctor`).

It reads the run's ``config.yaml``, its ``metrics.jsonl`` and a few batches of its training data, and
prints one row per check: what it measured, a verdict and the override to try. The verdicts:

- ``likely``: a cause a control in this project showed (the change put the loss at ln K and undoing it
  took it off), found in this run;
- ``possible``: measured in this run and a candidate, but no control here has shown it to be a cause;
- ``no``: measured, and not this run's problem.

The checks only judge when the symptom is there (the DINO loss's last tenth of logged steps within 1%
of ln K, the collapse watch's tolerance); a run that has left ln K gets its measurements and no verdict.
"""

from __future__ import annotations

import copy
import inspect
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vitlab._moved import moved
from vitlab.config import instantiate, load_config
from vitlab.data import build_dataset, build_loader
from vitlab.engine.logging import read_metrics, tenth_mean
from vitlab.engine.schedules import as_schedule
from vitlab.ssl.crop_stats import crop_stats
from vitlab.ssl.masking import sample_ibot_masks
from vitlab.ssl.multicrop import MultiCrop
from vitlab.tasks import DINOv3Task

__all__ = ["Finding", "diagnose", "report"]

AT_LN_K = 0.99  # the collapse watch's 1%
CROP_SHARE = 0.25  # a quarter of a kind of crop flat or alike another image's: the DINO pairs see it
CLIPPED_SHARE = 0.9
FLAT_START = 0.95  # a target this close to uniform carries almost no information about the image
# benchmarks/ssl_scenes.md: no single override took the scenes' DINO loss off ln K at 200 steps; three changes to the
# views and targets together did (below), without raising the scene label's k-NN.
SHARPEN_ADVICE = ("task.teacher_temp.base=0.02 sharpens the targets (scenes, 200 steps: target 0.944 ln K, "
                  "loss still 0.995; benchmarks/ssl_scenes.md)")
# Each as (what the fix needs, its override, the scenes' loss at 200 steps with the fix less this one change). With all
# four the scenes' loss ends at 0.888-0.897 ln K in 400 steps (3 seeds; experiments/dinov3_scenes.py: six local crops
# at 0.4-0.8 of the canvas, iBOT masks on a quarter of the global crops); without local crops and masks, 0.852-0.870 at
# 200 steps (3 runs, 2 seeds); with none of them at 1.000 (2 seeds). The recipe's small local crops (0.05-0.32) put it
# back (0.851 -> 0.988, masks on a quarter of the crops, 400 steps); the iBOT masks on half the crops (DINOv3's) to
# 0.925-0.937 (no local crops, 200 steps); the prototypes' gain (0.867 frozen, 0.870 trained) is not part of it.
VIEWS_FIX = (
    ("near-identical global crops (scale >= 0.9)", "data.train_transform.global_crops_scale=[0.9,1.0]", "0.973"),
    ("teacher temperature <= 0.02", "task.teacher_temp.base=0.02", "0.950"),
    ("iBOT masks on at most a quarter of the global crops", "data.collate.masker.mask_probability=0.25", "0.925-0.937"),
    ("no local crops, or large ones (scale >= 0.4)", "data.train_transform.local_crops_scale=[0.4,0.8]", "0.988"),
)
HEAD_ADVICE = ("together: " + " ".join(o for _, o, _ in VIEWS_FIX) + " (scenes: 0.888-0.897 ln K in 400 steps, "
               "where the small-budget recipe stays at 1.000; benchmarks/ssl_scenes.md)")


@dataclass
class Finding:
    """One check: what it measured, ``likely`` / ``possible`` / ``no`` (``-``: not judged) and the override to try."""

    check: str
    measured: str
    verdict: str = "-"
    advice: str = ""


def _scalar(spec: Any) -> float | None:
    """A loss weight or temperature as a number (a schedule's base), None if absent."""
    if spec is None:
        return None
    if isinstance(spec, (int, float)):
        return float(spec)
    return float(spec.get("base")) if hasattr(spec, "get") and spec.get("base") is not None else None


def symptom(cfg: Any, rows: list[dict[str, Any]]) -> tuple[Finding, bool]:
    """The DINO loss (and its target's entropy) against ln K, first and last tenth of the logged steps."""
    ln_k = tenth_mean(rows, "train/collapse/ln_k")
    if ln_k is None:
        ln_k = math.log(int(cfg.task.dino_head.out_dim))
    first, last = tenth_mean(rows, "train/dino_loss", first=True), tenth_mean(rows, "train/dino_loss")
    if last is None:
        raise ValueError("metrics.jsonl has no train/dino_loss: not a DINO run, or it logged no step")
    text = f"DINO loss {first / ln_k:.3f} -> {last / ln_k:.3f} ln K (ln K = {ln_k:.2f})"
    target = tenth_mean(rows, "train/collapse/target_entropy")
    if target is not None:
        text += f"; its target's entropy {target / ln_k:.3f} ln K"
    at = last / ln_k >= AT_LN_K
    return Finding("DINO loss at ln K", text, "yes" if at else "no"), at


def crops(cfg: Any, *, batches: int = 2, max_images: int = 64) -> Finding:
    """The share of flat and of near-duplicate crops in a few of the run's training batches."""
    images = min(int(cfg.data.batch_size), max_images)
    loader = _train_loader(cfg, images)
    shares: dict[str, list[float]] = {}
    for i, batch in enumerate(loader):
        if i == batches:
            break
        if not isinstance(batch, dict) or "global_crops" not in batch:
            raise ValueError("the run's training batches hold no multi-crop 'global_crops': not a DINO run")
        for kind in ("global", "local"):
            if batch.get(f"{kind}_crops") is not None:
                for name, value in crop_stats(batch[f"{kind}_crops"], images).items():
                    shares.setdefault(f"{kind} {name}", []).append(value)
    mean = {k: sum(v) / len(v) for k, v in shares.items()}
    text = ", ".join(f"{k} {v:.0%}" for k, v in mean.items()) + f" ({batches} batches of {images} images)"
    worst = max(mean.get("local flat", 0), mean.get("local duplicate", 0))
    worst_global = max(mean.get("global flat", 0), mean.get("global duplicate", 0))
    advice = ""
    if worst >= CROP_SHARE and worst_global >= CROP_SHARE:
        advice = "whole images are flat or alike: check the data; then data.train_transform.*_crops_scale"
    elif worst >= CROP_SHARE:
        advice = "larger local crops, e.g. data.train_transform.local_crops_scale=[0.3,1.0]"
    elif worst_global >= CROP_SHARE:
        advice = "larger global crops, e.g. data.train_transform.global_crops_scale=[0.6,1.0]"
    return Finding("crops flat or alike across images", text,
                   "possible" if advice else "no", advice)


def _train_loader(cfg: Any, images: int) -> Any:
    """The run's training batches of ``images`` images, epoch 0 of its seed."""
    dc = cfg.data
    collate = instantiate(dc.collate) if dc.collate is not None else None
    loader, sampler = build_loader(build_dataset(dc, "train"), batch_size=images, seed=int(cfg.train.seed),
                                   shuffle=True, drop_last=True, collate_fn=collate)
    sampler.set_epoch(0)
    return loader


def _first_batch(cfg: Any, images: int) -> dict[str, Any]:
    return next(iter(_train_loader(cfg, images)))


def _mean_cosine(x: torch.Tensor) -> float:
    """Mean cosine similarity of the rows of ``x`` [N, D] with each other (the diagonal left out)."""
    z = torch.nn.functional.normalize(x.float(), dim=-1)
    n = len(z)
    return float(((z @ z.T).sum() - n) / (n * n - n))


def _target_entropy(task: Any, head: torch.nn.Module, readout: torch.Tensor, temp: float) -> float:
    """The DINO loss's target (Sinkhorn-Knopp or centred) from ``head`` on the readout of the 2B global
    crops, its mean entropy over ln K."""
    logits = head(readout).unflatten(0, (2, -1))  # [2, B, K]
    probs = task.dino_loss.teacher_probs(logits, temp)
    entropy = -(probs * probs.clamp_min(1e-30).log()).sum(-1).mean()
    return float(entropy) / math.log(logits.shape[-1])


def _build_task(cfg: Any) -> Any:
    torch.manual_seed(int(cfg.train.seed))
    return instantiate(cfg.task, model=cfg.model).eval()


def first_targets(cfg: Any, *, max_images: int = 64) -> Finding:
    """The targets of the run's first step: its random-init teacher (built with the run's seed) on one
    batch of its global crops. When the teacher's readouts of different images point the same way,
    Sinkhorn-Knopp must give every image nearly the same, nearly uniform target: the loss has nothing
    to learn from at the start."""
    batch = _first_batch(cfg, min(int(cfg.data.batch_size), max_images))
    task = _build_task(cfg)
    temp = float(as_schedule(cfg.task.get("teacher_temp", 0.07), int(cfg.train.max_steps or 1))(0))
    with torch.no_grad():
        readout = task.model.readout(task.model.forward_features(batch["global_crops"]))
        entropy = _target_entropy(task, task.teacher_dino_head, readout, temp)
    text = (f"random-init teacher on the first batch's global crops: readout cosine between images "
            f"{_mean_cosine(readout):.3f}, target entropy {entropy:.3f} ln K at teacher_temp {temp:.3f}")
    flat = entropy >= FLAT_START
    return Finding("first targets", text, "possible" if flat else "no", SHARPEN_ADVICE if flat else "")


def head(cfg: Any, run_dir: Path) -> Finding:
    """The trained DINO head against a fresh one on the same trained teacher backbone (the run's last
    checkpoint, one batch of global crops): a head that gives every image one distribution while a
    fresh head on the same features does not has learnt the uniform output."""
    checkpoints = sorted((run_dir / "checkpoints").glob("step_*.pt"))
    if not checkpoints:
        return Finding("DINO head", "no checkpoint in the run directory")
    state = torch.load(checkpoints[-1], map_location="cpu", weights_only=True)
    task = _build_task(cfg)
    fresh = copy.deepcopy(task.teacher_dino_head)  # the init, with the run's seed
    task.load_state_dict(state["task"], strict=False)  # the teacher backbone is the checkpoint's "model"
    task.model.load_state_dict(state["model"])
    batch = _first_batch(cfg, min(int(cfg.data.batch_size), 64))
    temp = float(as_schedule(cfg.task.get("teacher_temp", 0.07), int(cfg.train.max_steps or 1))(int(state["step"])))
    with torch.no_grad():
        readout = task.model.readout(task.model.forward_features(batch["global_crops"]))
        trained = _target_entropy(task, task.teacher_dino_head, readout, temp)
        new = _target_entropy(task, fresh, readout, temp)
        bottleneck = task.teacher_dino_head.mlp(readout)
        spread = [float(h(readout).std(dim=-1).mean()) for h in (task.teacher_dino_head, fresh)]
    text = (f"{checkpoints[-1].name}: target entropy {trained:.3f} ln K from the trained teacher head, "
            f"{new:.3f} from a fresh head on the same backbone; logit spread over the prototypes (std) "
            f"{spread[0]:.4f} trained, {spread[1]:.4f} fresh; bottleneck cosine between images "
            f"{_mean_cosine(bottleneck):.3f}, readout cosine {_mean_cosine(readout):.3f}")
    stuck = trained >= AT_LN_K and new <= FLAT_START
    return Finding("DINO head", text, "possible" if stuck else "no", HEAD_ADVICE if stuck else "")


def _teacher_temps(cfg: Any) -> list[float]:
    """The run's teacher temperature at its first, middle and last step ([] when the config leaves it unset)."""
    spec, steps = cfg.task.get("teacher_temp"), int(cfg.train.max_steps or 1)
    if spec is None:
        return []
    schedule = as_schedule(spec, steps)
    return [float(schedule(s)) for s in sorted({0, steps // 2, steps - 1})]


def _default(fn: Any, name: str) -> Any:
    """The default of ``fn``'s argument ``name``: what a setting the config leaves out is."""
    return inspect.signature(fn).parameters[name].default


def views_and_targets(cfg: Any) -> Finding:
    """The DINO pairs' views and targets against the changes that, together, took the scenes' loss off ln K
    (:data:`VIEWS_FIX`): each one the run lacks is listed, with the loss the scenes reached without it."""
    tf = cfg.data.get("train_transform") or {}
    scale = tf.get("global_crops_scale") or _default(MultiCrop, "global_crops_scale")
    temps = _teacher_temps(cfg)
    temp = max(temps) if temps else _default(DINOv3Task, "teacher_temp")
    masker = (cfg.data.get("collate") or {}).get("masker")
    local = tf.get("local_crops_scale") or _default(MultiCrop, "local_crops_scale")
    n_local = int(tf.get("local_crops_number", _default(MultiCrop, "local_crops_number")) or 0)
    masked = 0.0 if masker is None else float(masker.get("mask_probability", _default(sample_ibot_masks, "mask_probability")))
    has = (float(scale[0]) >= 0.9, temp <= 0.02, masked <= 0.25, n_local == 0 or float(local[0]) >= 0.4)
    missing = [(what, override, back) for (what, override, back), ok in zip(VIEWS_FIX, has) if not ok]
    text = (f"global crops {list(scale)}, teacher temperature up to {temp:.3f}, iBOT masks on {masked:.0%} of the global "
            f"crops, {n_local} local crops" + (f" at {list(local)}" if n_local else ""))
    if not missing:
        return Finding("views and targets", text + ": all of the scenes' fix", "no")
    text += "; lacks " + ", ".join(f"{what} (the scenes without it: {back} ln K)" for what, _, back in missing)
    return Finding("views and targets", text, "likely", " ".join(o for _, o, _ in missing) + " (together; "
                   "benchmarks/ssl_scenes.md)")


def prototypes(cfg: Any) -> Finding:
    """Sinkhorn-Knopp spreads each prototype's mass over the batch's 2B global crops: with K > 2B no
    target can be sharper than entropy ln(K / 2B)."""
    k, b = int(cfg.task.dino_head.out_dim), int(cfg.data.batch_size)
    floor = math.log(k / (2 * b)) / math.log(k) if k > 2 * b else 0.0
    text = f"K = {k} prototypes, {2 * b} global crops per batch: the target's entropy is at least {floor:.2f} ln K"
    high = floor >= 0.9
    return Finding("prototypes against the batch", text, "possible" if high else "no",
                   f"fewer prototypes, e.g. task.dino_head.out_dim={2 * b}" if high else "")


def teacher_temperature(cfg: Any) -> Finding:
    """The teacher temperature (and its schedule); in benchmarks/ssl_recipe.md 0.07 in place of 0.04 put
    the quickstart's DINO loss at ln K and the collapse watch fired."""
    values, steps = _teacher_temps(cfg), int(cfg.train.max_steps or 1)
    if not values:
        return Finding("teacher temperature", "not set (the task's default)")
    text = " -> ".join(f"{v:.3f}" for v in values) + f" over {steps} steps"
    high = max(values) >= 0.07
    return Finding("teacher temperature", text, "likely" if high else "no",
                   "task.teacher_temp=0.04 (held; DINOv3 warms 0.04 -> 0.07 over 30 of 100 epochs)" if high else "")


def gradients(cfg: Any, rows: list[dict[str, Any]]) -> Finding:
    """How often the gradient norm was over ``train.clip_grad`` (one global norm scales every part down)."""
    clip, scope = cfg.train.get("clip_grad"), cfg.train.get("clip_grad_scope", "global")
    norms = [r["train/grad_norm"] for r in rows if "train/grad_norm" in r]
    lrs = [r["train/lr"] for r in rows if "train/lr" in r]
    if not norms:
        return Finding("gradient clipping", "no train/grad_norm logged")
    norms_sorted = sorted(norms)
    median = norms_sorted[len(norms) // 2]
    share = sum(n > clip for n in norms) / len(norms) if clip else 0.0
    text = f"grad norm median {median:.3g}, over train.clip_grad={clip} on {share:.0%} of logged steps ({scope} scope)"
    text += f"; peak lr {max(lrs):.3g}" if lrs else ""
    clipped = share >= CLIPPED_SHARE and scope == "global"
    return Finding("gradient clipping", text, "possible" if clipped else "no",
                   "train.clip_grad_scope=module (DINOv3: backbone and heads apart)" if clipped else "")


def koleo(cfg: Any) -> Finding:
    """KoLeo spreads the batch's embeddings; in benchmarks/ssl_recipe.md weight 0 did not beat random init."""
    weight = _scalar(cfg.task.get("koleo_weight"))
    off = weight is not None and weight == 0
    return Finding("KoLeo", f"task.koleo_weight={weight}", "possible" if off else "no",
                   "task.koleo_weight=0.1 (DINOv3)" if off else "")


def diagnose(run_dir: str | Path, *, batches: int = 2) -> tuple[Finding, list[Finding]]:
    """The symptom and every check of the run in ``run_dir``; the checks' verdicts are ``-`` when the
    DINO loss is not at ln K."""
    run_dir = Path(run_dir)
    for name in ("config.yaml", "metrics.jsonl"):
        if not (run_dir / name).is_file():
            raise FileNotFoundError(f"{run_dir}: no {name} (not a vitlab run directory?)")
    cfg = load_config(run_dir / "config.yaml")
    if "task" not in cfg or "dino_head" not in cfg.task:
        raise ValueError(f"{run_dir}: its task has no dino_head (vitlab doctor reads DINO runs)")
    rows = read_metrics(run_dir / "metrics.jsonl")
    found, at_ln_k = symptom(cfg, rows)
    checks = [crops(cfg, batches=batches), first_targets(cfg), head(cfg, run_dir), views_and_targets(cfg),
              prototypes(cfg), teacher_temperature(cfg), gradients(cfg, rows), koleo(cfg)]
    if not at_ln_k:
        for c in checks:
            c.verdict, c.advice = "-", ""
    return found, checks


def report(found: Finding, checks: list[Finding]) -> str:
    lines = [f"{found.check}: {found.verdict} ({found.measured})"]
    width = max(len(c.check) for c in checks)
    for c in checks:
        lines.append(f"  {c.check:<{width}}  {c.verdict:<8}  {c.measured}")
        if c.advice:
            lines.append(f"  {'':<{width}}  {'try':<8}  {c.advice}")
    flagged = [c for c in checks if c.verdict in ("likely", "possible")]
    if found.verdict == "yes" and not flagged:
        lines.append("no check found a cause; see docs/dinov3.md, 'When the DINO loss sits at ln K'")
    elif found.verdict != "yes":
        lines.append("the DINO loss has left ln K: nothing to report")
    return "\n".join(lines)


# ``vitlab doctor`` itself: :mod:`vitlab.cli.doctor` (the names raise an error naming it, for one release)
__getattr__ = moved(__name__, {"add_arguments": "vitlab.cli.doctor.add_arguments", "run": "vitlab.cli.doctor.run"})
