"""The memory plan (``vitlab flops --memory``, :mod:`vitlab.memory`): its activations against the bytes a
real training step saves for backward on CPU, the state parts, sharding, and bad input."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vitlab.config import apply_overrides, instantiate, load_config, typed_sections
from vitlab.engine.activation_checkpointing import apply_activation_checkpointing
from vitlab.memory import SavedTensors, example_batch, plan_memory

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "e2e" / "tiny_fmnist.py"
TINY_DINO = ROOT / "tests" / "configs" / "tiny_dino.py"
ACTIVATIONS = "activations (saved for backward)"


def config(path, *overrides):
    return typed_sections(apply_overrides(load_config(path), list(overrides)))


def measured_activations(cfg) -> int:
    """What a real step of ``cfg`` saves for backward, on CPU (the plan's step: all milestones passed)."""
    torch.manual_seed(0)
    task = instantiate(cfg.task, model=cfg.model)
    apply_activation_checkpointing(task, cfg.train.activation_checkpointing)
    steps = cfg.train.max_steps
    task.setup(total_steps=steps)
    task.train()
    task.before_step(steps - 1)
    batch = example_batch(cfg, cfg.data.batch_size)
    with SavedTensors(exclude=[*task.parameters(), *task.buffers()]) as saved:
        task.training_step(batch)
    return saved.total


@pytest.mark.parametrize("path", [TINY, TINY_DINO])
@pytest.mark.parametrize("checkpointing", ["none", "full"])
def test_planned_activations_match_a_real_step(path, checkpointing):
    cfg = config(path, f"train.activation_checkpointing={checkpointing}")
    planned = plan_memory(cfg).parts[ACTIVATIONS]
    measured = measured_activations(cfg)
    assert abs(planned - measured) <= 0.1 * measured, (planned, measured)


def test_checkpointing_plan_keeps_block_inputs_and_one_recomputation():
    none = plan_memory(config(TINY_DINO)).parts
    full = plan_memory(config(TINY_DINO, "train.activation_checkpointing=full")).parts
    assert full[ACTIVATIONS] < 0.6 * none[ACTIVATIONS]
    assert 0 < full["a checkpointed block recomputed in backward"] < none[ACTIVATIONS] / 2


def test_a_checkpointed_block_keeps_exactly_its_input():
    from tests.models.helpers import tiny

    model = instantiate(tiny("H", num_registers=0, readout="gap", class_token=False)).train()
    tokens, layout = model.prepare_tokens(torch.randn(2, 3, 16, 16))
    x = tokens.detach().requires_grad_()
    model.set_activation_checkpointing(1)
    with SavedTensors(exclude=[*model.parameters(), *model.buffers()]) as saved:
        model.run_block(0, x, layout)
    assert saved.total == x.nbytes
    model.set_activation_checkpointing(None)
    with SavedTensors(exclude=[*model.parameters(), *model.buffers()]) as saved:
        model.run_block(0, x, layout)
    assert saved.total > 5 * x.nbytes


def test_state_parts_and_sharding():
    one = plan_memory(config(TINY_DINO))
    params = one.parts["parameters (trained)"]
    assert one.parts["gradients"] == params and one.parts["optimizer state (AdamW, 2 per parameter)"] == 2 * params
    task = instantiate(config(TINY_DINO).task, model=config(TINY_DINO).model)
    trained = sum(p.numel() for m in task.trainable_modules().values() for p in m.parameters())
    assert params == 4 * trained
    assert one.parts["frozen copies (EMA / Gram teachers, their heads)"] > 0  # the EMA teacher and the Gram teacher
    two = plan_memory(config(TINY_DINO), world_size=2, strategy="fsdp")
    assert two.parts["parameters (trained)"] == params // 2 and two.micro_batch == one.micro_batch // 2
    assert two.parts[ACTIVATIONS] < 0.6 * one.parts[ACTIVATIONS]
    ddp = plan_memory(config(TINY_DINO), world_size=2, strategy="ddp")
    assert ddp.parts["parameters (trained)"] == params


def test_plans_a_7b_model_without_allocating_it():
    """DINOv3 7B's trunk width and depth (4096 wide, 40 blocks, 32 heads; with ViT-S/16's GELU MLP of ratio 4
    that is 12 D^2 = 201 M parameters a block, 8.05 B in all, against 6.7 B with 7B's SwiGLU), its heads,
    teacher and optimizer: planned on fake tensors, in seconds, sharded over 64 ranks."""
    import time

    cfg = config(ROOT / "experiments" / "dinov3_vits16.py", "model.dim=4096", "model.num_blocks=40",
                 "model.block_layer.mixer_layer.num_heads=32")
    start = time.perf_counter()
    plan = plan_memory(cfg, batch_size=64, world_size=64, strategy="fsdp", precision="bf16")
    assert time.perf_counter() - start < 60
    trained = plan.parts["parameters (trained)"] * 64 / 4
    assert 8.05e9 < trained < 8.05e9 * 1.05  # + the DINO and iBOT heads
    assert plan.parts[ACTIVATIONS] > 0 and plan.micro_batch == 1


@pytest.mark.parametrize("kwargs, match", [
    (dict(precision="fp8"), "--precision"), (dict(strategy="zero3"), "--strategy"),
    (dict(batch_size=7, world_size=2), "does not split"), (dict(batch_size=0), "--batch-size")])
def test_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        plan_memory(config(TINY), **kwargs)


def test_cli():
    run = lambda *a: subprocess.run([sys.executable, "-m", "vitlab", "flops", *a], cwd=ROOT, capture_output=True,  # noqa: E731
                                    text=True, timeout=300)
    out = run(str(TINY), "--memory", "--batch-size", "16", "train.activation_checkpointing=full")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "global batch 16" in out.stdout and "activation checkpointing full" in out.stdout and "total" in out.stdout
    bad = run("configs/models/hybrid_fmnist.py", "--memory")
    assert bad.returncode != 0 and "defines no task" in bad.stderr


def test_optimizer_state_follows_the_optimizer():
    from vitlab.config import L
    from vitlab.engine.lamb import Lamb

    cfg = config(TINY)
    params = plan_memory(cfg).parts["parameters (trained)"]
    cfg.optim.optimizer = L(torch.optim.SGD)(momentum=0.9)
    assert plan_memory(cfg).parts["optimizer state (SGD, 1 per parameter)"] == params
    cfg.optim.optimizer = L(torch.optim.SGD)()
    assert plan_memory(cfg).parts["optimizer state (SGD, 0 per parameter)"] == 0
    cfg.optim.optimizer = L(Lamb)()
    assert plan_memory(cfg).parts["optimizer state (Lamb, 2 per parameter)"] == 2 * params
    cfg.optim.optimizer = L(torch.optim.Adagrad)()
    with pytest.raises(ValueError, match="optim.optimizer: Adagrad"):
        plan_memory(cfg)
