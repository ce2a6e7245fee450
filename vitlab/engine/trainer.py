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

import torch
from omegaconf import DictConfig

from vitlab.config import instantiate
from vitlab.engine import distributed
from vitlab.engine.batches import build_data, data_stream, to_device
from vitlab.engine.faults import Faults
from vitlab.engine.logging import MetricLogger, flat_hparams, peak_memory_mb
from vitlab.engine.nonfinite import NonFiniteGuard
from vitlab.engine.optim import build_optimizer, lr_scale_factor, param_groups, set_hyperparams
from vitlab.engine.precision import Precision
from vitlab.engine.resume import RunState, restore, save_checkpoint
from vitlab.engine.rng import seed_everything
from vitlab.engine.run_dir import prepare_run_dir
from vitlab.engine.schedules import as_schedule

__all__ = ["train"]


def train(cfg: DictConfig, *, experiment: str = "run") -> dict[str, float]:
    """Run ``cfg`` (keys ``model``, ``task``, ``data``, ``optim``, ``train``) and return the last eval metrics."""
    info = distributed.setup(cfg.train.get("device", "auto"))
    tc = cfg.train
    run_dir = prepare_run_dir(cfg, experiment, info)

    seed_everything(tc.seed)  # identical initial weights on every rank (FSDP does not broadcast)
    task = instantiate(cfg.task, model=cfg.model).to(info.device)
    train_loader, sampler, make_eval_loader = build_data(cfg, info)
    accum = tc.grad_accum_steps
    steps_per_epoch = sampler.batches_per_epoch // accum
    total_steps = tc.max_steps if tc.get("max_steps") else tc.epochs * steps_per_epoch
    task.setup(total_steps=total_steps)
    lr_factor = lr_scale_factor(cfg.optim.get("lr_scaling"), cfg.data.batch_size)
    lr_base = as_schedule(cfg.optim.lr, total_steps)
    lr_schedule = (lambda s: lr_factor * lr_base(s)) if lr_factor != 1.0 else lr_base
    wd_schedule = as_schedule(cfg.optim.weight_decay, total_steps)
    model = distributed.wrap(task, info, tc.get("strategy", "ddp"))
    groups = param_groups(task.trainable_modules(), layer_decay=cfg.optim.get("layer_decay", 1.0),
                          patch_embed_lr_mult=cfg.optim.get("patch_embed_lr_mult", 1.0),
                          no_weight_decay=cfg.optim.get("no_weight_decay", "timm"))
    optimizer = build_optimizer(cfg.optim.optimizer, groups)
    params = [p for g in optimizer.param_groups for p in g["params"]]
    precision = Precision(tc.get("precision", "auto"), info.device)
    guard = NonFiniteGuard(tc.max_nonfinite_steps)
    state = RunState()
    seed_everything(tc.seed + 1_000_003 * info.rank)  # distinct dropout / drop-path / mixup per rank
    restore(tc.get("resume"), run_dir, task, optimizer, precision, state, info)
    logger = MetricLogger(run_dir, total_steps=total_steps, enabled=info.is_main, start_step=state.step)
    data = data_stream(train_loader, sampler, state)
    faults = Faults.from_env()
    stop = {"requested": False}
    old_handler = signal.signal(signal.SIGTERM, lambda *_: stop.update(requested=True))
    last_eval: dict[str, float] = {}
    start_eval: dict[str, float] = {}
    has_val = cfg.data.get("val") is not None
    window = {"start": time.perf_counter(), "steps": 0, "wait": 0.0}

    def evaluate() -> dict[str, float]:
        """The task's evaluation; its time is left out of the throughput window."""
        t0 = time.perf_counter()
        with precision.autocast(), distributed.full_params(model):
            metrics = task.evaluate(make_eval_loader)
        window["start"] += time.perf_counter() - t0
        return metrics

    if info.is_main:
        print(f"[vitlab] {experiment}: {total_steps} steps, {steps_per_epoch} steps/epoch, "
              f"world size {info.world_size}, device {info.device}, run dir {run_dir}", flush=True)
        logger.log_text("config", (run_dir / "config.yaml").read_text())

    try:
        if has_val and tc.get("eval_at_start") and state.step == 0:
            # the untrained network's metrics (e.g. k-NN at random initialisation), logged at step 0
            start_eval = evaluate()
            logger.restart_clock()  # the ETA counts training steps only
            if start_eval:
                logger.log(0, {f"val/{k}": v for k, v in start_eval.items()})
                print("[vitlab] step 0 (before training): " + ", ".join(f"{k} {v:.2f}" for k, v in start_eval.items()),
                      flush=True) if info.is_main else None
        while state.step < total_steps:
            step = state.step
            lr, wd = lr_schedule(step), wd_schedule(step)
            set_hyperparams(optimizer, lr, wd)
            scheduled = task.before_step(step)
            optimizer.zero_grad(set_to_none=True)
            losses, metric_sums = [], {}
            for micro in range(accum):
                t0 = time.perf_counter()
                batch = to_device(next(data), info.device)
                window["wait"] += time.perf_counter() - t0
                last = micro == accum - 1
                sync = model.no_sync() if hasattr(model, "no_sync") and not last else contextlib.nullcontext()
                with sync:
                    with precision.autocast():
                        loss, metrics = model(batch)
                    precision.backward(loss / accum)
                losses.append(loss.detach().float())
                for k, v in metrics.items():
                    metric_sums[k] = metric_sums.get(k, 0.0) + v.detach().float() / accum
            precision.unscale(optimizer)
            task.before_optimizer_step(step)
            grad_norm = torch.nn.utils.clip_grad_norm_(params, tc.clip_grad or float("inf"))
            grad_norm = grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm
            loss = torch.stack(losses).mean()
            # every rank must take the same branch: agree on bad loss / bad grads / stop signal
            flags = distributed.all_reduce_max(torch.stack([
                (~torch.isfinite(loss)).float(), (~torch.isfinite(grad_norm)).float(),
                torch.tensor(float(stop["requested"]), device=loss.device)]))
            loss_ok, grads_ok = flags[0].item() == 0, flags[1].item() == 0 or precision.scaler is not None
            stopping = flags[2].item() > 0  # a SIGTERM reached some rank before this step's all-reduce
            if guard.check(step, loss_ok, grads_ok):
                precision.step(optimizer)
                task.after_optimizer_step(step)
            else:
                optimizer.zero_grad(set_to_none=True)
            state.step = step + 1
            window["steps"] += 1

            if state.step % tc.log_every == 0 or state.step == total_steps:
                if info.device.type == "cuda":
                    torch.cuda.synchronize()  # honest timings: wait for queued kernels
                elapsed = time.perf_counter() - window["start"]
                values = {"train/loss": distributed.all_reduce_mean(loss).item(), "train/lr": lr,
                          "train/weight_decay": wd, "train/grad_norm": grad_norm.item(),
                          "train/epoch": state.epoch + state.batch / max(sampler.batches_per_epoch, 1),
                          "perf/images_per_s": window["steps"] * cfg.data.batch_size / elapsed,
                          "perf/step_time_s": elapsed / window["steps"],
                          "perf/data_wait_s": window["wait"] / window["steps"],
                          "perf/peak_memory_mb": peak_memory_mb(info.device),
                          "train/skipped_steps": float(guard.total_skipped)}
                values |= {f"train/{k}": distributed.all_reduce_mean(v).item() for k, v in metric_sums.items()}
                values |= {f"schedule/{k}": float(v) for k, v in scheduled.items()}
                logger.log(state.step, values)
                window = {"start": time.perf_counter(), "steps": 0, "wait": 0.0}

            is_best = False
            if has_val and ((tc.eval_every and state.step % tc.eval_every == 0) or state.step == total_steps):
                last_eval = evaluate()
                if last_eval:
                    logger.log(state.step, {f"val/{k}": v for k, v in last_eval.items()})
                    value = last_eval.get(tc.best_metric.removeprefix("val/"))
                    is_best = state.improve_best(value, tc.best_mode)
            if (is_best or state.step % tc.checkpoint_every == 0 or state.step == total_steps
                    or stopping):
                save_checkpoint(run_dir, cfg, task, optimizer, precision, state, info, tc.keep_last, is_best)
            faults.maybe_fire(state.step)
            if stopping:
                print(f"[vitlab] SIGTERM: saved a checkpoint at step {state.step} and stopped", flush=True)
                break
        if info.is_main and start_eval and last_eval and state.step == total_steps:
            print("[vitlab] before -> after training: " + ", ".join(
                f"{k} {start_eval[k]:.2f} -> {v:.2f} ({v - start_eval[k]:+.2f})"
                for k, v in last_eval.items() if k in start_eval), flush=True)
        logger.log_hparams(flat_hparams(cfg), last_eval)
    finally:
        signal.signal(signal.SIGTERM, old_handler)
        logger.close()
    distributed.barrier()
    return last_eval
