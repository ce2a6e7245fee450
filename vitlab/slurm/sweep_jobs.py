"""``vitlab sweep CONFIG ... launch.launcher=slurm``: the sweep's runs as Slurm jobs.

Every training run is a task of one job array (the runs share their resources; ``launch.array_parallelism``
run at once); each run's evaluation (:func:`vitlab.sweep.record_result`: its checkpoint and its random
init under the sweep's protocol) is the matching task of a second array that starts once that training
task succeeded (``--dependency=aftercorr``; ``--kill-on-invalid-dep``: a failed training cancels it);
the raw-pixel baseline is one job after all evaluations. The job ids go to ``<sweep>/slurm_jobs.json``.

``vitlab sweep CONFIG --status`` prints each run's state and writes the tables of what has finished,
with the local runner's own writer (``result.json`` per run, then ``results.csv`` / ``.md`` / ``.png``).
Running the sweep again submits only the runs that failed or were never submitted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vitlab.slurm.executor import check_cluster, check_launch, make_executor
from vitlab.slurm.jobs import cancel, job_result, job_state, log_tail
from vitlab.slurm.train_job import TrainJob
from vitlab.sweep import pixel_baseline, record_result, summarise_sweep, train_overrides

__all__ = ["ScoreJob", "PixelJob", "submit_sweep", "sweep_status", "run_state", "JOBS_FILE"]

JOBS_FILE = "slurm_jobs.json"
LIVE = {"PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "COMPLETING", "RESIZING",
        "SUSPENDED", "STAGE_OUT", "SIGNALING", "RESV_DEL_HOLD"}


@dataclass
class ScoreJob:
    """The evaluation of one trained run of a sweep, as a job."""

    run: dict[str, Any]
    out: str

    def __call__(self) -> str:
        return record_result(self.run, Path(self.out))["status"]


@dataclass
class PixelJob:
    """The sweep's raw-pixel baseline, scored with a finished run's data and protocol."""

    out: str
    overrides: list[str]

    def __call__(self) -> dict[str, Any] | None:
        out = Path(self.out)
        return pixel_baseline(_results(out, _jobs(out)["plan"]), out, self.overrides)


def _results(out: Path, runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ``result.json`` of every run that has one, in the grid's order (as the local runner lists them)."""
    files = [out / run["name"] / "result.json" for run in runs]
    return [json.loads(f.read_text()) for f in files if f.exists()]


def _jobs(out: Path) -> dict[str, Any]:
    path = out / JOBS_FILE
    return json.loads(path.read_text()) if path.exists() else {"runs": {}, "pixels": None}


def run_state(run: dict[str, Any], out: Path, jobs: dict[str, Any]) -> tuple[str, str]:
    """``(state, detail)`` of a sweep run: ``done``, ``failed`` (detail: why, with its log's last lines),
    ``pending`` / ``running`` / ``requeued`` (its training job), ``evaluating``, or ``not submitted``.
    A training job that ended without success gets its ``result.json`` (failed, with the reason), as the
    local runner writes one."""
    result_file = out / run["name"] / "result.json"
    if result_file.exists():
        result = json.loads(result_file.read_text())
        return ("done", "") if result["status"] == "ok" else ("failed", result.get("error", ""))
    ids = jobs["runs"].get(run["name"])
    if ids is None:
        return "not submitted", ""
    folder = out / "slurm"
    train = job_state(ids["train"])
    if train.state in LIVE:
        requeues = f" (requeued {train.restarts}x)" if train.restarts else ""
        if train.state == "PENDING":
            return ("requeued" if train.restarts else "pending"), f"{train.reason}{requeues}"
        return train.state.lower(), requeues.strip()
    result = job_result(folder, ids["train"])
    trained = train.state == "COMPLETED" or (train.state == "UNKNOWN" and result is not None and result[0] == "success")
    if not trained:
        if train.state == "UNKNOWN" and result is None:
            return "failed", f"train job {ids['train']}: Slurm has no record of it and it left no result"
        traceback = str(result[1]).strip().splitlines()[-3:] if result is not None and result[0] == "error" else []
        why = " | ".join(traceback) or log_tail(folder, ids["train"], lines=5).replace("\n", " | ")
        error = f"train job {ids['train']} {train.state.lower()} (exit {train.exit_code or '?'}): {why}"
        cancel([ids["score"]])  # its dependency can never be met
        record_result(run, out, error)
        return "failed", error
    score = job_state(ids["score"])
    if score.state in LIVE:
        return "evaluating", f"evaluation job {ids['score']} {score.state.lower()}"
    why = log_tail(folder, ids["score"], lines=5).replace("\n", " | ")
    return "failed", f"evaluation job {ids['score']} {score.state.lower()} without a result: {why}"


def submit_sweep(runs: list[dict[str, Any]], config: str | Path, out: Path, launch: Any,
                 pixel_overrides: list[str]) -> int:
    """Submit the runs that are neither done nor queued, their evaluations and the pixel baseline; returns 0."""
    check_launch(launch)
    check_cluster(launch)
    jobs, folder, name = _jobs(out), out / "slurm", Path(config).stem
    todo = []
    for run in runs:
        state, detail = run_state(run, out, jobs)
        if state in ("done", "pending", "running", "requeued", "evaluating"):
            print(f"[sweep] {run['name']}: {state} {detail}".rstrip() + ", not resubmitted", flush=True)
            continue
        if state == "failed":
            (out / run["name"] / "result.json").unlink(missing_ok=True)
        todo.append(run)
    if todo:
        path = str(Path(config).resolve())
        with (train_ex := make_executor(launch, folder, f"{name}-train")).batch():
            trains = [train_ex.submit(TrainJob(path, train_overrides(run, out), run["name"], launch.max_requeues))
                      for run in todo]
        head = trains[0].job_id.split("_")[0]
        after = f"aftercorr:{head}" if len(trains) > 1 else f"afterok:{head}"
        score_ex = make_executor(launch, folder, f"{name}-eval", single_task=True, dependency=after)
        score_ex.update_parameters(additional_parameters={**launch.additional_parameters, "kill-on-invalid-dep": "yes"})
        with score_ex.batch():
            scores = [score_ex.submit(ScoreJob(run, str(out.resolve()))) for run in todo]
        for run, train, score in zip(todo, trains, scores):
            jobs["runs"][run["name"]] = {"train": train.job_id, "score": score.job_id}
            print(f"[sweep] {run['name']}: training job {train.job_id}, evaluation job {score.job_id}", flush=True)
    pixels_live = jobs.get("pixels") and job_state(jobs["pixels"]).state in LIVE
    if todo or not ((out / "pixels.json").exists() or pixels_live):
        waits = sorted({ids["score"].split("_")[0] for ids in jobs["runs"].values()})
        pixel_ex = make_executor(launch, folder, f"{name}-pixels", single_task=True,
                                 dependency="afterany:" + ":".join(waits) if waits else None)
        jobs["pixels"] = pixel_ex.submit(PixelJob(str(out.resolve()), pixel_overrides)).job_id
        print(f"[sweep] raw-pixel baseline: job {jobs['pixels']}", flush=True)
    jobs["plan"] = runs  # what --status reads: the runs of the grid, in order
    (out / JOBS_FILE).write_text(json.dumps(jobs, indent=2) + "\n")
    print(f"[sweep] {len(todo)} of {len(runs)} run(s) submitted; logs in {folder}; follow with "
          f"`vitlab sweep {config} --status --out {out}`", flush=True)
    return 0


def sweep_status(out: Path) -> int:
    """Print the state of every run submitted into ``out``; write the tables from the runs that finished.

    Raises:
        FileNotFoundError: nothing was submitted into ``out``.
    """
    if not (out / JOBS_FILE).exists():
        raise FileNotFoundError(f"--status: {str(out / JOBS_FILE)!r} does not exist: no sweep was submitted to Slurm "
                                "into this folder (--out)")
    jobs = _jobs(out)
    runs = jobs["plan"]
    counts: dict[str, int] = {}
    for run in runs:
        state, detail = run_state(run, out, jobs)
        counts[state] = counts.get(state, 0) + 1
        print(f"[sweep] {run['name']}: {state}" + (f": {detail}" if detail else ""), flush=True)
    if jobs.get("pixels"):
        pixels_state = "done" if (out / "pixels.json").exists() else job_state(jobs["pixels"]).state.lower()
        print(f"[sweep] raw-pixel baseline (job {jobs['pixels']}): {pixels_state}", flush=True)
    print("[sweep] " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())), flush=True)
    results = _results(out, runs)
    if results:
        pixels_file = out / "pixels.json"
        summarise_sweep(results, out, json.loads(pixels_file.read_text()) if pixels_file.exists() else None)
    return 0
