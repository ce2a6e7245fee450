"""From a ``launch`` section (:class:`vitlab.config.LaunchConfig`) to a submitit Slurm executor, after
checking the section and the cluster so that bad input fails before anything is queued.

submitit (the launcher of dinov2, dinov3 and detectron2) writes the sbatch script, pickles the job and
runs it with ``srun``, one task per rank; its folder holds the scripts, the pickles and the logs
(``<job id>_<task>_log.out`` / ``.err``).
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path
from typing import Any

from vitlab.config.run import LAUNCHERS

__all__ = ["check_launch", "check_cluster", "make_executor"]

_AT_LEAST = {"nodes": 1, "tasks_per_node": 1, "gpus_per_node": 0, "cpus_per_task": 1, "mem_gb": 0.001, "time_min": 1,
             "signal_delay_s": 1, "max_requeues": 0, "array_parallelism": 1}


def check_launch(launch: Any) -> None:
    """The fields of a ``launch`` section, each within its range.

    Raises:
        ValueError: naming the field and its value (``launch.nodes=0``).
    """
    if launch.launcher not in LAUNCHERS:
        raise ValueError(f"launch.launcher={launch.launcher!r}: must be one of {', '.join(LAUNCHERS)}")
    for name, low in _AT_LEAST.items():
        value = launch[name]
        if value is not None and value < low:
            raise ValueError(f"launch.{name}={value}: must be at least {low}")
    if 0 < launch.gpus_per_node < launch.tasks_per_node:
        raise ValueError(f"launch.tasks_per_node={launch.tasks_per_node} with launch.gpus_per_node="
                         f"{launch.gpus_per_node}: one task per GPU, so at most {launch.gpus_per_node} tasks per node")


def check_cluster(launch: Any) -> None:
    """That submitit is importable, a Slurm controller answers, and ``launch.partition`` exists.

    Raises:
        ValueError: what is missing, naming the field and value that asked for it.
    """
    where = f"launch.launcher={launch.launcher!r}"
    if importlib.util.find_spec("submitit") is None:
        raise ValueError(f"{where} needs submitit, which is not installed: pip install submitit")
    if shutil.which("sbatch") is None or shutil.which("scontrol") is None:
        raise ValueError(f"{where}, but no Slurm is reachable: sbatch / scontrol are not on PATH "
                         "(on a laptop, start one with `sudo bash tools/slurm_local.sh`)")
    ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=60)
    if ping.returncode != 0 or "UP" not in ping.stdout:
        raise ValueError(f"{where}, but no Slurm controller answers: `scontrol ping` says "
                         f"{(ping.stdout + ping.stderr).strip()!r}")
    if launch.partition:
        show = subprocess.run(["scontrol", "show", "partition", str(launch.partition)], capture_output=True,
                              text=True, timeout=60)
        if show.returncode != 0:
            known = subprocess.run(["sinfo", "-h", "-o", "%R"], capture_output=True, text=True, timeout=60).stdout.split()
            raise ValueError(f"launch.partition={launch.partition!r}: no such Slurm partition "
                             f"(this cluster has: {', '.join(sorted(set(known))) or 'none'})")


def make_executor(launch: Any, folder: str | Path, name: str, *, single_task: bool = False,
                  dependency: str | None = None):
    """A ``submitit.SlurmExecutor`` for ``launch`` writing into ``folder``.

    Args:
        launch: the ``launch`` section.
        folder: submitit's folder (job scripts, pickles, logs).
        name: the Slurm job name.
        single_task: one task on one node (evaluation jobs), with at most one GPU.
        dependency: an sbatch ``--dependency`` (``aftercorr:123``).
    """
    import submitit

    executor = submitit.SlurmExecutor(folder=str(folder), max_num_timeout=launch.max_requeues)
    params: dict[str, Any] = {
        "job_name": name,
        "nodes": 1 if single_task else launch.nodes,
        "ntasks_per_node": 1 if single_task else launch.tasks_per_node,
        "time": launch.time_min,
        "signal_delay_s": launch.signal_delay_s,
        "array_parallelism": launch.array_parallelism,
        "additional_parameters": dict(launch.additional_parameters),
        "setup": list(launch.setup),
    }
    gpus = min(launch.gpus_per_node, 1) if single_task else launch.gpus_per_node
    optional = {"gpus_per_node": gpus or None, "cpus_per_task": launch.cpus_per_task, "partition": launch.partition,
                "account": launch.account, "qos": launch.qos, "constraint": launch.constraint,
                "mem": f"{int(launch.mem_gb * 1024)}M" if launch.mem_gb else None, "dependency": dependency}
    params |= {k: v for k, v in optional.items() if v is not None}
    executor.update_parameters(**params)
    return executor
