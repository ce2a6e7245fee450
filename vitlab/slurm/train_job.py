"""A training run as a Slurm job: submitit pickles a :class:`TrainJob`, every task of the job calls it.

Inside the job each task is one rank (``vitlab.engine.distributed`` reads Slurm's environment: no
torchrun). Stopping follows submitit's checkpoint/requeue protocol, at a step boundary:

* Before its time limit or on preemption, Slurm sends SIGUSR2 (sbatch ``--signal=USR2@signal_delay_s``).
  The trainer's handler asks every rank to stop at the next step; the main rank writes the checkpoint it
  writes on any stop; then the job hands the signal back to submitit, whose handler calls
  :meth:`TrainJob.checkpoint` (a copy of the job with ``train.resume=auto``) and requeues the job with
  ``scontrol requeue``, up to ``launch.max_requeues`` times. The requeued job resumes bit-identically.
* SIGTERM (``scancel``, ``scontrol requeue``, a preemption that requeues the job itself) stops and
  checkpoints the same way; Slurm decides whether the job comes back, and a job that comes back
  (``SLURM_RESTART_COUNT`` > 0) always resumes from its newest checkpoint.
* Any other failure is raised: submitit records the traceback and the job is not requeued.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass, field, replace
from typing import Any

__all__ = ["TrainJob", "RunInterrupted", "slurm_job_id"]


class RunInterrupted(RuntimeError):
    """The run stopped on a signal before its last step (its checkpoint is written)."""


def slurm_job_id() -> str | None:
    """This job's id as squeue prints it: ``123`` or, for a task of a job array, ``120_3``."""
    if os.environ.get("SLURM_ARRAY_JOB_ID"):
        return f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ.get('SLURM_ARRAY_TASK_ID', '0')}"
    return os.environ.get("SLURM_JOB_ID")


@dataclass
class TrainJob:
    """``vitlab train CONFIG OVERRIDES`` in a Slurm job.

    Args:
        config: the experiment file (an absolute path: the job may start in another directory).
        overrides: hydra-grammar overrides, ``train.output_dir`` among them (fixed at submission, so a
            requeued job finds its checkpoints).
        experiment: the run's name in logs.
        max_requeues: ``launch.max_requeues``.
    """

    config: str
    overrides: list[str] = field(default_factory=list)
    experiment: str = "run"
    max_requeues: int = 3

    def __call__(self) -> dict[str, float]:
        # Imported here, not at the top: submitit unpickles this job before it installs its signal handlers,
        # so the module stays light and a SIGUSR2 that comes early finds the handlers already in place.
        from vitlab.config import apply_overrides, load_config
        from vitlab.engine import distributed
        from vitlab.engine.trainer import Trainer

        overrides = list(self.overrides)
        if int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0) > 0:  # requeued by Slurm: continue, never restart
            overrides.append("train.resume=auto")
        cfg = apply_overrides(load_config(self.config), overrides)
        cfg.launch.job_id = slurm_job_id()
        try:
            trainer = Trainer(cfg, experiment=self.experiment)
            metrics = trainer.fit()
        finally:
            distributed.cleanup()
        if trainer.state.step == trainer.total_steps:
            return metrics
        if trainer.stop_signal == "SIGUSR2":  # the time limit is near, or a preemption: submitit requeues
            os.kill(os.getpid(), signal.SIGUSR2)  # submitit's handler: checkpoint(), scontrol requeue, exit
        raise RunInterrupted(f"{self.experiment}: stopped by {trainer.stop_signal or 'a signal'} at step "
                             f"{trainer.state.step} of {trainer.total_steps}; its checkpoint is in "
                             f"{trainer.run_dir / 'checkpoints'} (train.resume=auto continues it)")

    def checkpoint(self, *args: Any, **kwargs: Any):
        """submitit's hook before a requeue: the same run, resuming from its newest checkpoint; None (no
        requeue) once the job has been requeued ``max_requeues`` times."""
        import submitit

        restarts = int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0)
        if restarts >= self.max_requeues:
            print(f"[vitlab] not requeued: requeued {restarts} times already, launch.max_requeues="
                  f"{self.max_requeues}", flush=True)
            return None
        print(f"[vitlab] requeueing (requeue {restarts + 1} of at most {self.max_requeues})", flush=True)
        return submitit.helpers.DelayedSubmission(replace(self, overrides=[*self.overrides, "train.resume=auto"]))
