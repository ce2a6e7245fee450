"""Reading a Slurm job's state without job accounting (no ``sacct``): the controller's record
(``scontrol show job``, kept ``MinJobAge`` seconds after the end) and the result file submitit writes
when a task ends (``<job id>_<task>_result.pkl``: success with the value, or error with the traceback).
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["JobState", "job_state", "job_result", "log_paths", "log_tail", "follow", "cancel"]

ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE",
         "PREEMPTED", "SPECIAL_EXIT"}


@dataclass
class JobState:
    """What Slurm says of a job: ``state`` (PENDING, RUNNING, REQUEUED, COMPLETED, FAILED, ...; UNKNOWN once
    the controller has forgotten it), ``reason`` (why it pends), ``restarts`` (requeues so far)."""

    job_id: str
    state: str = "UNKNOWN"
    reason: str = ""
    restarts: int = 0
    exit_code: str = ""

    @property
    def ended(self) -> bool:
        return self.state in ENDED


def job_state(job_id: str) -> JobState:
    """``scontrol show job`` of one job (``123`` or an array task ``120_3``)."""
    proc = subprocess.run(["scontrol", "show", "job", "-o", str(job_id)], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0 or not proc.stdout.strip():
        return JobState(str(job_id))
    line = proc.stdout.strip().splitlines()[0]  # an array's record comes first for a task id
    fields = dict(part.split("=", 1) for part in line.split() if "=" in part)
    return JobState(str(job_id), fields.get("JobState", "UNKNOWN"), fields.get("Reason", ""),
                    int(fields.get("Restarts", "0") or 0), fields.get("ExitCode", ""))


def job_result(folder: str | Path, job_id: str, task: int = 0) -> tuple[str, object] | None:
    """submitit's result of a task: ``("success", value)`` / ``("error", traceback)``, None while there is none."""
    path = Path(folder) / f"{job_id}_{task}_result.pkl"
    if not path.exists():
        return None
    from submitit.core.utils import pickle_load

    return pickle_load(path)


def log_paths(folder: str | Path, job_id: str, task: int = 0) -> tuple[Path, Path]:
    """The stdout and stderr logs submitit gives a task of a job."""
    return Path(folder) / f"{job_id}_{task}_log.out", Path(folder) / f"{job_id}_{task}_log.err"


def log_tail(folder: str | Path, job_id: str, lines: int = 8) -> str:
    """The last ``lines`` lines of task 0's logs (stderr first: that is where a traceback goes)."""
    out: list[str] = []
    for path in reversed(log_paths(folder, job_id)):
        if path.exists():
            text = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
            out += text[-lines:]
        if len(out) >= lines:
            break
    return "\n".join(out[-lines:])


def cancel(job_ids: list[str]) -> None:
    if job_ids:
        subprocess.run(["scancel", *job_ids], capture_output=True, text=True, timeout=60)


def follow(folder: str | Path, job_id: str, *, poll_s: float = 2.0, out=sys.stdout) -> int:
    """Print task 0's logs as they grow until the job ends (a requeued job is followed into its next run);
    returns 0 if it completed with a result, else 1 after printing why."""
    offsets = {path: 0 for path in log_paths(folder, job_id)}
    last = ""
    while True:
        state = job_state(job_id)
        for path in offsets:
            if path.exists():
                with open(path, errors="replace") as fh:
                    fh.seek(offsets[path])
                    chunk = fh.read()
                    offsets[path] = fh.tell()
                if chunk:
                    out.write(chunk)
                    out.flush()
        summary = f"{state.state} {state.reason if state.reason not in ('', 'None') else ''}".strip()
        if summary != last:
            print(f"[vitlab] job {job_id}: {summary}" + (f" (requeued {state.restarts}x)" if state.restarts else ""),
                  file=out, flush=True)
            last = summary
        result = job_result(folder, job_id)
        if state.ended or (state.state == "UNKNOWN" and result is not None):
            break
        time.sleep(poll_s)
    if state.state in ("COMPLETED", "UNKNOWN") and result is not None and result[0] == "success":
        return 0
    why = result[1] if result is not None and result[0] == "error" else log_tail(folder, job_id)
    print(f"[vitlab] job {job_id} ended {state.state} (exit code {state.exit_code or '?'}):\n{why}", file=out, flush=True)
    return 1
