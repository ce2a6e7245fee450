"""Ranks and rendezvous from torchrun's or Slurm's environment; loader workers from the CPUs per task."""

import pytest
from omegaconf import OmegaConf

from vitlab.config import LaunchConfig
from vitlab.engine.distributed import cpus_per_rank, first_host, launch_env, loader_workers
from vitlab.slurm import check_launch

STEP = {"SLURM_JOB_ID": "4242", "SLURM_PROCID": "5", "SLURM_LOCALID": "1", "SLURM_STEP_NUM_TASKS": "8",
        "SLURM_STEP_NUM_NODES": "2", "SLURM_STEP_NODELIST": "gpu[007-008]", "SLURM_JOB_NODELIST": "gpu[007-008]"}


@pytest.mark.parametrize("nodelist, first", [("vm", "vm"), ("gpu[003-005,9],cpu1", "gpu003"), ("a-b[1,2]", "a-b1"),
                                             ("node7,node8", "node7"), ("n[10-11]-ib", "n10-ib")])
def test_first_host_of_a_slurm_host_list(nodelist, first):
    assert first_host(nodelist) == first


def test_a_slurm_task_is_a_rank_and_the_first_node_the_rendezvous():
    env = launch_env(STEP)
    assert env == {"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "4", "MASTER_ADDR": "gpu007",
                   "MASTER_PORT": str(20000 + 4242 % 20000)}
    # an array task gets its own port, torchrun's variables win, a user's MASTER_* win
    assert launch_env(STEP | {"SLURM_ARRAY_JOB_ID": "4240", "SLURM_ARRAY_TASK_ID": "3"})["MASTER_PORT"] == "24243"
    assert launch_env(STEP | {"RANK": "0", "WORLD_SIZE": "2"}) == {"RANK": "0", "WORLD_SIZE": "2"}
    assert launch_env(STEP | {"MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29500"})["MASTER_ADDR"] == "10.0.0.1"


def test_a_batch_script_or_a_workstation_is_one_process():
    batch_shell = {k: v for k, v in STEP.items() if not k.startswith("SLURM_STEP")}  # not started by srun
    assert launch_env(batch_shell) == {} and launch_env({}) == {}


def test_loader_workers_follow_the_cpus_per_task(monkeypatch):
    assert cpus_per_rank({"SLURM_CPUS_PER_TASK": "10"}) == 10
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "10")
    assert loader_workers(None) == 9 and loader_workers(3) == 3
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")
    assert loader_workers(None) == 0


@pytest.mark.parametrize("field, value, message", [
    ("nodes", 0, "launch.nodes=0: must be at least 1"), ("tasks_per_node", 0, "launch.tasks_per_node=0"),
    ("gpus_per_node", -1, "launch.gpus_per_node=-1"), ("time_min", 0, "launch.time_min=0"),
    ("max_requeues", -1, "launch.max_requeues=-1"), ("launcher", "pbs", "launch.launcher='pbs'"),
    ("tasks_per_node", 4, "launch.tasks_per_node=4 with launch.gpus_per_node=2: one task per GPU")])
def test_check_launch_names_the_field_and_value(field, value, message):
    launch = OmegaConf.structured(LaunchConfig(gpus_per_node=2, tasks_per_node=2))
    check_launch(launch)
    launch[field] = value
    with pytest.raises(ValueError, match=message.replace("[", r"\[")):
        check_launch(launch)
