"""The DINO step on the CUDA path, run on CPU: every kernel of the backbones (student and EMA
teacher) and of the losses on Triton (the interpreter), compiled whole as ``train.compile=true``
does it. It gives eager's losses and keeps one graph while the teacher temperature warms up."""

import torch

from tests.tasks.test_dino_task import make_task, run_steps
from vitlab.config import L
from vitlab.engine.schedules import Schedule
from vitlab.kernels import cross_entropy, sinkhorn


def triton_task():
    torch.manual_seed(0)
    return make_task(teacher_temp=L(Schedule)(base=0.07, warmup_start=0.04, warmup_steps=10, kind="constant"),
                     kernels="triton")  # model.kernels: the backbones and the losses


def test_compiled_dino_step_on_the_triton_kernels_matches_eager(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("a torch reference ran where the Triton kernel should")

    for module, name in ((sinkhorn, "sinkhorn_knopp_reference"), (cross_entropy, "softmax_cross_entropy_reference")):
        monkeypatch.setattr(module, name, forbidden)
    task = triton_task()
    eager = run_steps(task, 1) + run_steps(task, 2, first_step=1)
    torch._dynamo.reset()
    try:
        task = triton_task()
        task.compile(backend="aot_eager", dynamic=False)  # the "task" mode of apply_compile, without inductor
        compiled = run_steps(task, 1)
        with torch._dynamo.config.patch(error_on_recompile=True):  # new masks and temperatures: same graph
            compiled += run_steps(task, 2, first_step=1)
    finally:
        torch._dynamo.reset()
    assert all(h["ibot_loss"] > 0 for h in compiled)
    for got, want in zip(compiled, eager):
        for key in ("loss", "dino_loss", "ibot_loss", "koleo_loss"):
            assert abs(got[key] - want[key]) <= 1e-4 * max(1.0, abs(want[key])), (key, got, want)
