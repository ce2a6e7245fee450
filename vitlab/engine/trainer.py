"""The training loop: build everything from the config, resume, then step until ``max_steps``.

One step = ``grad_accum_steps`` micro-batches (forward under autocast, backward), gradient
clipping, a finiteness check agreed by all ranks, the optimizer step and the task's post-step hook
(EMA). Logging, evaluation and checkpointing happen at step boundaries, where the whole training
state (weights, optimizer, scaler, RNGs, data position) is consistent, which is what makes a
resumed run bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import signal
import time
from dataclasses import dataclass, field

import torch
from omegaconf import DictConfig

from vitlab.config import eval_config, instantiate, typed_sections
from vitlab.engine import distributed
from vitlab.engine.activation_checkpointing import apply_activation_checkpointing
from vitlab.engine.batches import build_data, data_stream, to_device
from vitlab.engine.clip import clip_gradients, clip_groups
from vitlab.engine.compile import apply_compile, resolve_compile
from vitlab.engine.faults import Faults
from vitlab.engine.host_memory import keep_freed_memory
from vitlab.engine.logging import MetricLogger, flat_hparams, peak_memory_mb
from vitlab.engine.mfu import peak_tflops
from vitlab.engine.nonfinite import NonFiniteGuard
from vitlab.engine.optim import build_optimizer, lr_scale_factor, param_groups, set_hyperparams
from vitlab.engine.precision import Precision
from vitlab.engine.init_from import InitReport, read_pretrained
from vitlab.engine.resume import Checkpointer, RunState, find_resume_path, restore
from vitlab.engine.rng import seed_everything
from vitlab.engine.run_dir import prepare_run_dir
from vitlab.engine.schedules import as_schedule

__all__ = ["Trainer", "StepResult", "train", "STOP_SIGNALS"]

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR2)
DATA_WAIT_WARNING = 0.2  # warn when more than this share of the step time waits for batches


@dataclass
class StepResult:
    """What one optimizer step leaves for logging: the mean loss over micro-batches, the global grad
    norm, the hyperparameters it ran with, the task's metrics and schedules, and whether to stop."""

    loss: torch.Tensor
    grad_norm: torch.Tensor
    lr: float
    weight_decay: float
    metrics: dict[str, torch.Tensor]
    scheduled: dict[str, float]
    stopping: bool  # a SIGTERM reached some rank before this step's all-reduce


@dataclass
class _Window:
    """The throughput window between two log lines (evaluation time is moved out of it)."""

    start: float = field(default_factory=lambda: time.perf_counter())
    steps: int = 0
    wait: float = 0.0  # seconds spent waiting for batches
    flops: float = 0.0  # this rank's analytic training FLOPs (task.train_flops), or nan if the task has none


class Trainer:
    """A training run of ``cfg`` (keys ``model``, ``task``, ``data``, ``optim``, ``train``).

    Construction builds everything (task, data, optimizer, precision, logger) and resumes; ``fit()``
    runs the steps. Seeds: ``train.seed`` before the task is built (identical initial weights on every
    rank: FSDP does not broadcast), then ``seed + 1_000_003 * rank`` before the restore (distinct
    dropout / drop-path / mixup per rank).
    """

    def __init__(self, cfg: DictConfig, *, experiment: str = "run"):
        self.cfg, self.experiment = typed_sections(cfg), experiment
        self.info = info = distributed.setup(cfg.train.device)
        keep_freed_memory()  # activations reuse freed host memory instead of page-faulting it back (host_memory.py)
        self.tc = tc = cfg.train
        oc = cfg.optim
        self.run_dir = prepare_run_dir(cfg, experiment, info)

        seed_everything(tc.seed)
        self.task = instantiate(cfg.task, model=cfg.model)
        self.init_report = self.init_from_weights()
        self.task.to(info.device)
        self.train_loader, self.sampler, self.make_eval_loader = build_data(cfg, info)
        self.steps_per_epoch = self.sampler.batches_per_epoch // tc.grad_accum_steps
        self.total_steps = tc.max_steps if tc.max_steps else tc.epochs * self.steps_per_epoch
        self.task.setup(total_steps=self.total_steps)
        lr_factor = lr_scale_factor(oc.lr_scaling, cfg.data.batch_size)
        lr_base = as_schedule(oc.lr, self.total_steps)
        self.lr_schedule = (lambda s: lr_factor * lr_base(s)) if lr_factor != 1.0 else lr_base
        self.wd_schedule = as_schedule(oc.weight_decay, self.total_steps)
        # torchtitan's order: activation checkpointing, then compile, then FSDP2 / DDP
        self.checkpoint_every = apply_activation_checkpointing(self.task, tc.activation_checkpointing)
        self.compile_mode = resolve_compile(tc.compile, info.device)
        apply_compile(self.task, self.compile_mode)
        self.model = distributed.wrap(self.task, info, tc.strategy)
        groups = param_groups(self.task.trainable_modules(), layer_decay=oc.layer_decay,
                              patch_embed_lr_mult=oc.patch_embed_lr_mult, no_weight_decay=oc.no_weight_decay)
        self.optimizer = build_optimizer(oc.optimizer, groups)
        self.params = [p for g in self.optimizer.param_groups for p in g["params"]]
        self.clip_groups = clip_groups(self.task.trainable_modules(), self.params, tc.clip_grad_scope)
        loaded = self.init_report.param_names if self.init_report else set()
        self.frozen = [p for name, p in self.task.named_parameters() if name in loaded]  # train.init_freeze_steps
        self.precision = Precision(tc.precision, info.device)
        self.peak_tflops = peak_tflops(info.device, self.precision.dtype, tc.peak_tflops)
        self.guard = NonFiniteGuard(tc.max_nonfinite_steps)
        self.state = RunState()
        seed_everything(tc.seed + 1_000_003 * info.rank)
        restore(tc.resume, self.run_dir, self.task, self.optimizer, self.precision, self.state, info)
        self.logger = MetricLogger(self.run_dir, total_steps=self.total_steps, enabled=info.is_main,
                                   start_step=self.state.step)
        self.data = data_stream(self.train_loader, self.sampler, self.state)
        self.faults = Faults.from_env()
        self.checkpointer = Checkpointer(self.run_dir, self.cfg, info, self.faults)
        self.stop_requested, self.stop_signal = False, ""  # a stop signal arrived, and its name
        self.warned_data_wait = False
        self.has_val = cfg.data.val is not None
        self.protocol = eval_config(self.cfg)  # the frozen-feature protocol of an SSL task's monitor
        self.start_eval: dict[str, float] = {}
        self.last_eval: dict[str, float] = {}
        self.window = _Window()

    def fit(self) -> dict[str, float]:
        """Train to ``total_steps`` (or until a stop signal) and return the last evaluation's metrics."""
        state, tc = self.state, self.tc
        previous_handlers = self.install_signal_handlers()
        try:
            self.announce()
            if self.has_val and tc.eval_at_start and state.step == 0:
                self.evaluate_at_start()
            while state.step < self.total_steps:
                result = self.train_step()
                if state.step % tc.log_every == 0 or state.step == self.total_steps:
                    self.log(result)
                is_best = self.maybe_evaluate()
                self.maybe_checkpoint(is_best, result.stopping)
                self.faults.maybe_fire(state.step, lambda: self.stop_requested)
                if result.stopping:
                    if self.info.is_main:
                        print(f"[vitlab] {self.stop_signal or 'a stop signal on another rank'}: saved a checkpoint "
                              f"at step {state.step} and stopped", flush=True)
                    break
            self.checkpointer.wait()  # an asynchronous save may still be writing
            if self.info.is_main and self.start_eval and self.last_eval and state.step == self.total_steps:
                self.print_before_after()
            self.logger.log_hparams(flat_hparams(self.cfg), self.last_eval)
        finally:
            for signum, handler in previous_handlers.items():
                signal.signal(signum, handler)
            self.logger.close()
        distributed.barrier()
        return self.last_eval

    # ----------------------------------------------------------------- one step
    def train_step(self) -> StepResult:
        """One optimizer step over ``grad_accum_steps`` micro-batches; skipped (by all ranks) if not finite."""
        step, optimizer, precision = self.state.step, self.optimizer, self.precision
        lr, wd = self.lr_schedule(step), self.wd_schedule(step)
        set_hyperparams(optimizer, lr, wd)
        scheduled = self.task.before_step(step)
        optimizer.zero_grad(set_to_none=True)
        loss, metrics = self.forward_backward()
        precision.unscale(optimizer)
        self.task.before_optimizer_step(step)
        if step < self.tc.init_freeze_steps:  # the loaded weights wait while the fresh ones warm up
            for p in self.frozen:
                p.grad = None
        grad_norm, group_norms = clip_gradients(self.clip_groups, self.tc.clip_grad)
        if len(group_norms) > 1:
            metrics |= {f"grad_norm/{name}": norm.detach() for name, norm in group_norms.items()}
        # every rank must take the same branch: agree on bad loss / bad grads / stop signal
        flags = distributed.all_reduce_max(torch.stack([
            (~torch.isfinite(loss)).float(), (~torch.isfinite(grad_norm)).float(),
            torch.tensor(float(self.stop_requested), device=loss.device)]))
        loss_ok, grads_ok = flags[0].item() == 0, flags[1].item() == 0 or precision.scaler is not None
        if self.guard.check(step, loss_ok, grads_ok):
            precision.step(optimizer)
            self.task.after_optimizer_step(step)
        else:
            optimizer.zero_grad(set_to_none=True)
        self.state.step = step + 1
        self.window.steps += 1
        return StepResult(loss, grad_norm, lr, wd, metrics, scheduled, stopping=flags[2].item() > 0)

    def forward_backward(self) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Forward and backward of each micro-batch (gradients synced on the last); mean loss and metrics."""
        accum = self.tc.grad_accum_steps
        losses, metric_sums = [], {}
        for micro in range(accum):
            t0 = time.perf_counter()
            batch = to_device(next(self.data), self.info.device)
            self.window.wait += time.perf_counter() - t0
            flops = self.task.train_flops(batch)
            self.window.flops += float("nan") if flops is None else flops
            last = micro == accum - 1
            no_sync = hasattr(self.model, "no_sync") and not last
            with self.model.no_sync() if no_sync else contextlib.nullcontext():
                with self.precision.autocast():
                    loss, metrics = self.model(batch)
                self.precision.backward(loss / accum)
            losses.append(loss.detach().float())
            for k, v in metrics.items():
                metric_sums[k] = metric_sums.get(k, 0.0) + v.detach().float() / accum
        return torch.stack(losses).mean(), metric_sums

    def init_from_weights(self) -> InitReport | None:
        """``train.init_from``: load the weights into the task (unless the run resumes) and print the report."""
        tc = self.tc
        if not tc.init_from or find_resume_path(tc.resume, self.run_dir) is not None:
            return None
        report = self.task.load_pretrained(read_pretrained(tc.init_from, which=tc.init_weights, prefix=tc.init_prefix))
        if self.info.is_main:
            print(report.table(), flush=True)
        return report

    # ----------------------------------------------------------------- around the steps
    def log(self, result: StepResult) -> None:
        """Losses, hyperparameters and throughput of the window since the last log line (ranks averaged)."""
        if self.info.device.type == "cuda":
            torch.cuda.synchronize()  # honest timings: wait for queued kernels
        w, state, batch_size = self.window, self.state, self.cfg.data.batch_size
        elapsed = time.perf_counter() - w.start
        values = {"train/loss": distributed.all_reduce_mean(result.loss).item(), "train/lr": result.lr,
                  "train/weight_decay": result.weight_decay, "train/grad_norm": result.grad_norm.item(),
                  "train/epoch": state.epoch + state.batch / max(self.sampler.batches_per_epoch, 1),
                  "perf/images_per_s": w.steps * batch_size / elapsed, "perf/step_time_s": elapsed / w.steps,
                  "perf/data_wait_s": w.wait / w.steps,
                  "perf/peak_memory_mb": peak_memory_mb(self.info.device),
                  "train/skipped_steps": float(self.guard.total_skipped)}
        if w.flops == w.flops:  # the task counts its FLOPs: achieved TFLOP/s per device, MFU against the peak
            values["train/tflops"] = w.flops / elapsed / 1e12
            if self.peak_tflops:
                values["train/mfu"] = values["train/tflops"] / self.peak_tflops
        values |= {f"train/{k}": distributed.all_reduce_mean(v).item() for k, v in result.metrics.items()}
        values |= {f"schedule/{k}": float(v) for k, v in result.scheduled.items()}
        self.logger.log(state.step, values)
        if state.step > self.tc.log_every:  # the first window also waits for the loader workers to start
            self.warn_data_wait(w.wait / elapsed)
        self.window = _Window()

    def warn_data_wait(self, share: float) -> None:
        """A loader that cannot keep up (too few workers or CPUs: the commonest slowdown on a cluster), once."""
        if share > DATA_WAIT_WARNING and not self.warned_data_wait and self.info.is_main:
            self.warned_data_wait = True
            workers = self.train_loader.num_workers
            print(f"[vitlab] warning: {share:.0%} of the step time waits for data (data.num_workers={workers}); "
                  "raise data.num_workers or launch.cpus_per_task (on Slurm the workers follow it)", flush=True)

    def evaluate(self) -> dict[str, float]:
        """The task's evaluation; its time is left out of the throughput window."""
        t0 = time.perf_counter()
        with self.precision.autocast(), distributed.full_params(self.model):
            metrics = self.task.evaluate(self.make_eval_loader, self.protocol)
        self.window.start += time.perf_counter() - t0
        return metrics

    def evaluate_at_start(self) -> None:
        """The untrained network's metrics (e.g. k-NN at random initialisation), logged at step 0."""
        self.start_eval = self.evaluate()
        self.logger.restart_clock()  # the ETA counts training steps only
        if self.start_eval:
            self.logger.log(0, {f"val/{k}": v for k, v in self.start_eval.items()})
            if self.info.is_main:
                print("[vitlab] step 0 (before training): " + ", ".join(
                    f"{k} {v:.2f}" for k, v in self.start_eval.items() if "/" not in k), flush=True)

    def maybe_evaluate(self) -> bool:
        """Evaluate every ``eval_every`` steps and at the end; returns whether the run has a new best."""
        step, tc = self.state.step, self.tc
        if not self.has_val or not ((tc.eval_every and step % tc.eval_every == 0) or step == self.total_steps):
            return False
        self.last_eval = self.evaluate()
        if not self.last_eval:
            return False
        self.logger.log(step, {f"val/{k}": v for k, v in self.last_eval.items()})
        return self.state.improve_best(self.last_eval.get(tc.best_metric.removeprefix("val/")), tc.best_mode)

    def maybe_checkpoint(self, is_best: bool, stopping: bool) -> None:
        """Save every ``checkpoint_every`` steps, at the end, on a new best and before stopping."""
        step, tc = self.state.step, self.tc
        if is_best or step % tc.checkpoint_every == 0 or step == self.total_steps or stopping:
            self.checkpointer.save(self.task, self.optimizer, self.precision, self.state, is_best)

    def install_signal_handlers(self) -> dict[int, object]:
        """SIGTERM (a cancel, a preemption, ``scontrol requeue``) and SIGUSR2 (what a submitit job gets before
        its time limit, ``launch.signal_delay_s``) ask for a stop: the ranks agree on it in the next step,
        checkpoint and stop. Returns the handlers they replace."""
        return {s: signal.signal(s, self.request_stop) for s in STOP_SIGNALS}

    def request_stop(self, signum: int = signal.SIGTERM, *_) -> None:
        self.stop_requested, self.stop_signal = True, signal.Signals(signum).name

    def announce(self) -> None:
        if self.info.is_main:
            print(f"[vitlab] {self.experiment}: {self.total_steps} steps, {self.steps_per_epoch} steps/epoch, "
                  f"world size {self.info.world_size}, device {self.info.device}, compile {self.compile_mode}, "
                  f"activation checkpointing {self.tc.activation_checkpointing}, "
                  f"run dir {self.run_dir}", flush=True)
            self.logger.log_text("config", (self.run_dir / "config.yaml").read_text())

    def print_before_after(self) -> None:
        """The headline metrics at step 0 and now (grouped ones such as ``tokens/*`` go to the logs only)."""
        print("[vitlab] before -> after training: " + ", ".join(
            f"{k} {self.start_eval[k]:.2f} -> {v:.2f} ({v - self.start_eval[k]:+.2f})"
            for k, v in self.last_eval.items() if k in self.start_eval and "/" not in k), flush=True)


def train(cfg: DictConfig, *, experiment: str = "run") -> dict[str, float]:
    """Run ``cfg`` (keys ``model``, ``task``, ``data``, ``optim``, ``train``) and return the last eval metrics."""
    return Trainer(cfg, experiment=experiment).fit()
