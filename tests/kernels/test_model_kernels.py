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
