"""Shared test setup: small thread count (CI has 2 cores) and deterministic seeds."""

import random

import numpy as np
import pytest
import torch

torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _seed():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def slurm():
    """A one-node Slurm on localhost, started once per test session by ``tools/slurm_local.sh`` (which
    installs Debian's slurm-wlm and munge as root); skipped, with the script's reason, where it cannot run."""
    import subprocess
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "tools" / "slurm_local.sh"
    proc = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=900)
    if proc.returncode == 3:
        pytest.skip(f"no Slurm here: {proc.stderr.strip()}")
    assert proc.returncode == 0, f"tools/slurm_local.sh failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout.strip()
