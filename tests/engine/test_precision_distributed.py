import signal

import pytest
import torch

from vitlab.engine import distributed
from vitlab.engine.faults import Faults
from vitlab.engine.precision import Precision


def test_cpu_is_fp32_and_refuses_half():
    p = Precision("auto", torch.device("cpu"))
    assert p.mode == "fp32" and p.scaler is None and p.state_dict() == {}
    with pytest.raises(ValueError, match="CUDA"):
        Precision("bf16", torch.device("cpu"))


def test_single_process_helpers_are_identity(monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    info = distributed.setup("cpu")
    assert info.world_size == 1 and info.is_main and not info.enabled
    x = torch.tensor([1.0, 2.0])
    assert torch.equal(distributed.all_reduce_mean(x), x) and distributed.gather_objects(3) == [3]
    module = torch.nn.Linear(2, 2)
    assert distributed.wrap(module, info, "ddp") is module


def test_fault_spec(monkeypatch):
    monkeypatch.setenv("VITLAB_FAULT", "SIGTERM@7")
    f = Faults.from_env()
    assert f.signal_number == signal.SIGTERM and f.step == 7
    monkeypatch.setenv("VITLAB_FAULT", "bogus")
    with pytest.raises(ValueError):
        Faults.from_env()
