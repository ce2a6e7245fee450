"""The backbone on its Triton kernels (interpreter on CPU) follows the torch path's loss trajectory."""

import pytest
import torch

from tests.models.helpers import assert_same_forward_backward, tiny
from vitlab.config import ConfigInstantiationError, instantiate


def train_losses(backend: str, steps: int = 3) -> list[float]:
    torch.manual_seed(0)
    model = instantiate(tiny("HGR", num_registers=1, max_drop_path_rate=0.2, drop_path_schedule="linear",
                             kernels=backend))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x, y = torch.randn(4, 3, 12, 16), torch.tensor([0, 1, 2, 3])
    losses = []
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_triton_kernels_follow_the_torch_trajectory():
    ref = train_losses("torch")
    fused = train_losses("triton")
    assert fused == pytest.approx(ref, rel=1e-4, abs=1e-5)


def test_kernels_knob_reaches_every_fused_part():
    model = instantiate(tiny("HGR", kernels="torch"))
    knobs = {type(m).__name__: m.kernels for m in model.modules() if hasattr(m, "kernels")}
    assert {"ResidualBranch", "LayerNorm", "Attention", "Hyena2D", "SwiGLU"} <= set(knobs)
    assert set(knobs.values()) == {"torch"}
    with pytest.raises(ConfigInstantiationError, match="kernels must be"):
        instantiate(tiny("A", kernels="cuda"))


def test_blocks_on_triton_kernels_compile_fullgraph():
    """The CUDA default, ``train.compile="blocks"`` with ``kernels="auto"`` (Triton), on CPU: every
    block type (A, R, H, G; a padded grid and registers) on the Triton kernels compiles with
    ``fullgraph=True`` and gives eager's outputs and gradients."""
    import copy

    torch.manual_seed(0)
    torch._dynamo.reset()
    model = instantiate(tiny("HGRA", num_registers=1, max_drop_path_rate=0.0, padding_types="HR", kernels="triton"))
    eager = copy.deepcopy(model)
    try:
        for block in model.blocks:
            block.compile(fullgraph=True, dynamic=False, backend="aot_eager")
        assert_same_forward_backward(model, eager, torch.randn(2, 3, 12, 16), atol=1e-6)
    finally:
        torch._dynamo.reset()


def _knobs(module: torch.nn.Module) -> dict[str, str]:
    return {name: m.kernels for name, m in module.named_modules() if hasattr(m, "kernels")}


def test_one_kernels_switch_reaches_every_part_of_every_mixer():
    """``kernels`` is injected like ``dim``: the network into its blocks and final norms, each block into its
    norms, mixer, FFN and residual branches, a mixer into its QK-norms and RMSNorms. Nothing is set afterwards."""
    for choice in ("torch", "triton"):
        knobs = _knobs(instantiate(tiny("ARHGSVLNC", kernels=choice, cls_norm_layer=tiny().norm_layer)))
        kinds = {type(m).__name__ for m in instantiate(tiny("ARHGSVLNC")).modules() if hasattr(m, "kernels")}
        assert kinds == {"HybridViT", "LayerNorm", "RMSNorm", "ResidualBranch", "Attention", "NeighborhoodAttention",
                         "Hyena2D", "Mamba2D", "SwiGLU"}
        assert {"cls_norm", "blocks.3.mixer.q_norm", "blocks.6.mixer.g_norm"} <= set(knobs)
        assert set(knobs.values()) == {choice}


def test_vitlab_kernels_is_only_the_default(monkeypatch):
    monkeypatch.setenv("VITLAB_KERNELS", "torch")
    assert set(_knobs(instantiate(tiny("HGR"))).values()) == {"torch"}
    assert set(_knobs(instantiate(tiny("HGR", kernels="triton"))).values()) == {"triton"}


def test_a_dino_task_passes_its_backbones_choice_to_its_losses():
    from tests.tasks.test_dino_task import make_task

    knobs = _knobs(make_task(kernels="torch"))
    assert {"dino_loss", "ibot_loss", "student.blocks.0.mixer"} <= set(knobs) and set(knobs.values()) == {"torch"}
    assert len([k for k in knobs if k.split(".")[0] == "student"]) * 2 + 2 == len(knobs)  # and the EMA teacher's copy
