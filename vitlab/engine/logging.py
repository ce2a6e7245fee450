"""Run logging: TensorBoard scalars, ``metrics.jsonl`` (one line per logged step), a console line.

Only rank 0 logs (``enabled=False`` elsewhere). On resume, lines and events written after the
checkpoint's step (by the killed run) are dropped, so the logged history reads as one run.
"""

from __future__ import annotations

import json
import math
import resource
import time
from pathlib import Path
from typing import Any

import torch

__all__ = ["MetricLogger", "format_eta", "read_metrics", "tenth_mean", "peak_memory_mb", "flat_hparams"]


def format_eta(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    return f"{h}:{rem // 60:02d}:{rem % 60:02d}"


def peak_memory_mb(device: torch.device) -> float:
    """Peak allocated CUDA memory, or the process's peak resident set size on CPU, in MiB."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def flat_hparams(cfg: Any, keys: tuple[str, ...] = ("train", "optim", "data", "task")) -> dict[str, Any]:
    """Scalar leaves of the given config sections, as ``section.key`` -> value (for the HPARAMS tab)."""
    from omegaconf import OmegaConf

    out: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{prefix}.{k}")
        elif isinstance(node, (int, float, str, bool)):
            out[prefix] = node

    for key in keys:
        if key in cfg:
            walk(OmegaConf.to_container(cfg[key], resolve=True), key)
    return out


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` file."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def tenth_mean(records: list[dict[str, Any]], key: str, *, first: bool = False) -> float | None:
    """The mean of ``key`` over the last (``first``: the first) tenth of the records that log it, at least
    one record: a training metric's level with its step-to-step noise averaged out. Non-finite values
    are left out; None if no record has a finite one."""
    values = [r[key] for r in records if key in r and math.isfinite(r[key])]
    if not values:
        return None
    n = max(1, len(values) // 10)
    part = values[:n] if first else values[-n:]
    return sum(part) / len(part)


class MetricLogger:
    """Writes scalars to TensorBoard and ``metrics.jsonl`` and prints a progress line.

    Args:
        run_dir: the run directory.
        total_steps: for the ETA.
        enabled: False on ranks other than 0.
        start_step: the step a resumed run continues from (later records are dropped).
    """

    def __init__(self, run_dir: str | Path, *, total_steps: int, enabled: bool = True, start_step: int = 0):
        self.enabled, self.total_steps = enabled, total_steps
        self.writer = None
        self.path = Path(run_dir) / "metrics.jsonl"
        if not enabled:
            return
        from torch.utils.tensorboard import SummaryWriter  # deferred: tensorboard import is slow

        self.wall_offset = 0.0  # wall_s of a resumed run continues from its last record
        if start_step > 0 and self.path.exists():
            kept = [r for r in read_metrics(self.path) if r.get("step", 0) <= start_step]
            self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))
            self.wall_offset = max((r.get("wall_s", 0.0) for r in kept), default=0.0)
        elif self.path.exists():
            self.path.unlink()
        self.writer = SummaryWriter(str(run_dir), purge_step=start_step + 1 if start_step > 0 else None)
        self.file = open(self.path, "a")
        self.started = self.created = time.perf_counter()
        self.start_step = start_step

    def restart_clock(self) -> None:
        """Starts the ETA clock now (after one-off work such as the step-0 evaluation)."""
        self.started = time.perf_counter()

    def log(self, step: int, scalars: dict[str, float], *, console: bool = True) -> None:
        """Record ``scalars`` at ``step`` (keys like ``train/loss``, ``val/top1``)."""
        if not self.enabled:
            return
        for key, value in scalars.items():
            self.writer.add_scalar(key, value, step)
        wall_s = round(self.wall_offset + time.perf_counter() - self.created, 3)  # evaluations included
        self.file.write(json.dumps({"step": step, **scalars, "wall_s": wall_s}) + "\n")
        self.file.flush()
        if console:
            print(self.progress_line(step, scalars), flush=True)

    def progress_line(self, step: int, scalars: dict[str, float]) -> str:
        done = step - self.start_step
        rate = (time.perf_counter() - self.started) / done if done > 0 else float("nan")
        parts = [f"step {step}/{self.total_steps}"]
        for key, fmt in (("train/loss", ".4f"), ("perf/images_per_s", ".1f"), ("train/tflops", ".3g"),
                         ("train/mfu", ".1%"), ("train/lr", ".2e")):
            if key in scalars:
                parts.append(f"{key.split('/')[-1]} {scalars[key]:{fmt}}")
        # a task's loss terms (DINO, iBOT, KoLeo, Gram) and the entropy of the DINO loss's target vs ln K
        parts += [f"{k.removeprefix('train/')} {v:.3f}" for k, v in scalars.items()
                  if k.startswith("train/") and k.endswith("_loss")]
        if "train/collapse/target_entropy" in scalars and "train/collapse/ln_k" in scalars:
            parts.append(f"target_entropy {scalars['train/collapse/target_entropy']:.2f}"
                         f"/{scalars['train/collapse/ln_k']:.2f}")
        parts += [f"{k} {v:.4f}" for k, v in scalars.items() if k.startswith("val/") and k.count("/") == 1]
        parts.append(f"eta {format_eta(rate * (self.total_steps - step))}")
        return " | ".join(parts)

    def log_text(self, tag: str, text: str) -> None:
        if self.enabled:
            self.writer.add_text(tag, f"```\n{text}\n```")

    def log_hparams(self, hparams: dict[str, Any], metrics: dict[str, float]) -> None:
        """Hyperparameters (numbers, strings, bools) against final metrics in the HPARAMS tab."""
        if not self.enabled:
            return
        clean = {k: v for k, v in hparams.items() if isinstance(v, (int, float, str, bool))}
        self.writer.add_hparams(clean, {f"hparam/{k}": v for k, v in metrics.items()}, run_name=".")

    def close(self) -> None:
        if self.enabled:
            self.writer.close()
            self.file.close()
