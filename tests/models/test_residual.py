"""ResidualBranch owns the fused ``x + drop_path(gamma * y)``: a block's printed parts are the parts
that run, hooks see the residual updates, and the LayerScale keys stay ``blocks.N.ls1.gamma``."""

import pytest
import torch

from tests.models.helpers import tiny
from vitlab.config import instantiate
from vitlab.layers import ResidualBranch


@pytest.mark.parametrize("kind", ["A", "R", "H", "G"])
def test_every_part_of_a_block_runs(kind):
    model = instantiate(tiny(kind, max_drop_path_rate=0.1)).train()
    block = model.blocks[0]
    ran = set()
    for name, m in block.named_modules():
        m.register_forward_hook(lambda m, args, out, name=name: ran.add(name))
    model(torch.randn(2, 3, 16, 16))
    # Attention applies qkv's weight with F.linear (to mask the key bias), not through its forward;
    # SwiGLU's fused kernel computes its SiLU itself
    not_called = {"mixer.qkv", "ffn.act"} if kind == "G" else {"mixer.qkv"}
    assert ran == {name for name, _ in block.named_modules()} - not_called


def test_hooks_see_the_residual_updates():
    model = instantiate(tiny("G")).eval()  # LayerScale 0.1
    block = model.blocks[0]
    seen = []
    block.ls1.register_forward_hook(lambda m, args, out: seen.append((*args, out)))
    model(torch.randn(2, 3, 16, 16))
    (x, y, out), = seen
    torch.testing.assert_close(out, x + block.ls1.gamma * y)
    assert "(ls1): ResidualBranch(dim=32, layer_scale_init=0.1, drop_path_rate=0.0)" in repr(block)


def test_layer_scale_keys_are_unchanged():
    with_ls = instantiate(tiny("GG"))
    keys = [k for k in with_ls.state_dict() if ".ls" in k]
    assert keys == ["blocks.0.ls1.gamma", "blocks.0.ls2.gamma", "blocks.1.ls1.gamma", "blocks.1.ls2.gamma"]
    assert all(torch.all(with_ls.state_dict()[k] == 0.1) for k in keys)
    without = instantiate(tiny("AR"))
    assert not [k for k in without.state_dict() if ".ls" in k]
    assert without.blocks[0].ls1.gamma is None


def test_drop_path_drops_whole_samples():
    branch = ResidualBranch(8, layer_scale_init=0.5, drop_path_rate=0.5).train()
    x, y = torch.randn(64, 5, 8), torch.randn(64, 5, 8)
    out = branch(x, y)
    dropped = (out == x).flatten(1).all(dim=1)
    assert 0 < dropped.sum() < 64
    torch.testing.assert_close(out[~dropped], x[~dropped] + 0.5 * y[~dropped] / 0.5)
    torch.testing.assert_close(branch.eval()(x, y), x + 0.5 * y)


def test_bad_drop_path_rate_names_the_field():
    with pytest.raises(ValueError, match=r"drop_path_rate must be in \[0, 1\), got 1.0"):
        ResidualBranch(8, drop_path_rate=1.0)
