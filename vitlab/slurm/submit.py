"""``vitlab train CONFIG launch.launcher=slurm ...``: submit the run as one Slurm job and return.

The run directory is fixed here (``train.output_dir`` or ``runs/<experiment>/<timestamp>``, made
absolute), so a requeued job finds its checkpoints; submitit's files and logs go to
``launch.folder`` (default ``<run dir>/slurm``).
"""

from __future__ import annotations

import time
from pathlib import Path

from omegaconf import DictConfig

from vitlab.slurm.executor import check_cluster, check_launch, make_executor
from vitlab.slurm.jobs import follow, log_paths
from vitlab.slurm.train_job import TrainJob

__all__ = ["submit_train"]


def submit_train(cfg: DictConfig, config: str | Path, overrides: list[str], *, experiment: str,
                 wait: bool = False) -> int:
    """Submit ``vitlab train config overrides`` as a Slurm job; with ``wait``, follow its log to the end.

    Returns:
        0 once submitted (without ``wait``), else the job's outcome: 0 completed, 1 not.
    """
    launch = cfg.launch
    check_launch(launch)
    check_cluster(launch)
    run_dir = Path(cfg.train.output_dir or f"runs/{experiment}/{time.strftime('%Y%m%d-%H%M%S')}").resolve()
    folder = Path(launch.folder).resolve() if launch.folder else run_dir / "slurm"
    job = TrainJob(config=str(Path(config).resolve()), experiment=experiment, max_requeues=launch.max_requeues,
                   overrides=[*overrides, f"train.output_dir='{run_dir}'"])
    submitted = make_executor(launch, folder, experiment).submit(job)
    out, err = log_paths(folder, submitted.job_id)
    print(f"[vitlab] submitted job {submitted.job_id} ({launch.nodes} node(s) x {launch.tasks_per_node} task(s), "
          f"{launch.time_min} min, up to {launch.max_requeues} requeues)\n[vitlab] run dir {run_dir}\n"
          f"[vitlab] logs {out} and {err}", flush=True)
    return follow(folder, submitted.job_id) if wait else 0
