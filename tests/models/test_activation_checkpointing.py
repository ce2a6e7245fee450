"""Activation checkpointing (``HybridViT.set_activation_checkpointing``, ``train.activation_checkpointing``):
bit-identical losses and gradients with drop path, for every block type, padded and not."""

import pytest
import torch

from tests.models.helpers import tiny
from vitlab.config import instantiate
from vitlab.engine.activation_checkpointing import apply_activation_checkpointing, resolve_activation_checkpointing


def loss_and_grads(model, x, seed):
    torch.manual_seed(seed)  # drop path draws its masks from the global RNG
    model.zero_grad(set_to_none=True)
    loss = model(x).square().mean()
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


# A, R, H each alone and mixed; registers 2 (Hyena pads the layout to whole rows) or 0 (a 4x4 grid + CLS: padded
# for H too) and with the CLS token off and no registers: no padding at all
@pytest.mark.parametrize("pattern", ["A", "R", "H", "HRA"])
@pytest.mark.parametrize("layout", [dict(num_registers=2), dict(num_registers=0, readout="gap", class_token=False)])
@pytest.mark.parametrize("every", [1, 2])
def test_checkpointed_run_is_bit_identical(pattern, layout, every):
    torch.manual_seed(0)
    model = instantiate(tiny(pattern * 2, max_drop_path_rate=0.3, **layout)).train()
    x = torch.randn(3, 3, 16, 16)
    ref_loss, ref_grads = loss_and_grads(model, x, seed=1)
    model.set_activation_checkpointing(every)
    assert sum(model.checkpointed) == len(model.blocks) // every
    loss, grads = loss_and_grads(model, x, seed=1)
    assert torch.equal(loss, ref_loss)
    assert grads.keys() == ref_grads.keys()
    for name in grads:
        assert torch.equal(grads[name], ref_grads[name]), name
    # and drop path is really drawing: another seed changes the loss
    assert not torch.equal(loss_and_grads(model, x, seed=2)[0], ref_loss)


def test_checkpointing_keeps_fewer_tensors_for_backward():
    torch.manual_seed(0)
    model = instantiate(tiny("HRA" * 2)).train()
    x = torch.randn(4, 3, 16, 16)

    def saved_bytes():
        total = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: total.append(t.nbytes) or t, lambda t: t):
            model(x).sum()
        return sum(total)

    full = saved_bytes()
    model.set_activation_checkpointing(1)
    assert saved_bytes() < 0.5 * full


def test_selective_rule_and_no_grad(monkeypatch):
    import vitlab.models.vit as vit

    model = instantiate(tiny("HRA" * 2))
    model.set_activation_checkpointing(3)
    assert model.checkpointed == [False, False, True, False, False, True]  # torchtitan: every k-th, 1-based
    model.set_activation_checkpointing(None)
    assert not any(model.checkpointed)
    model.set_activation_checkpointing(1)
    calls = []
    monkeypatch.setattr(vit, "checkpoint", lambda *a, **k: calls.append(1) or torch.utils.checkpoint.checkpoint(*a, **k))
    with torch.no_grad():  # an EMA teacher, an evaluation
        model(torch.randn(1, 3, 16, 16))
    assert not calls
    model(torch.randn(1, 3, 16, 16))
    assert len(calls) == 6


@pytest.mark.parametrize("value, every", [(None, None), ("none", None), ("full", 1), (1, 1), (4, 4)])
def test_resolve(value, every):
    assert resolve_activation_checkpointing(value) == every


@pytest.mark.parametrize("value", ["all", 0, -2, True, 1.5, "2"])
def test_bad_value_names_the_field(value):
    with pytest.raises(ValueError, match=r"train\.activation_checkpointing.*" + repr(value).replace(".", r"\.")):
        resolve_activation_checkpointing(value)


def test_apply_needs_a_network():
    with pytest.raises(ValueError, match="no network"):
        apply_activation_checkpointing(torch.nn.Linear(2, 2), "full")
    assert apply_activation_checkpointing(torch.nn.Linear(2, 2), "none") is None
