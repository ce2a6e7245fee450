"""Slurm through submitit: a run or a sweep's runs as jobs, preemption-safe requeue, job states."""

from vitlab.slurm.executor import check_cluster, check_launch, make_executor
from vitlab.slurm.jobs import JobState, job_result, job_state, log_tail
from vitlab.slurm.submit import submit_train
from vitlab.slurm.train_job import RunInterrupted, TrainJob, slurm_job_id

__all__ = ["check_launch", "check_cluster", "make_executor", "submit_train", "TrainJob", "RunInterrupted",
           "slurm_job_id", "JobState", "job_state", "job_result", "log_tail"]
