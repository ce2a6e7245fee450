"""Gradient clipping by one global norm or one norm per trainable module (DINOv3)."""

import pytest
import torch
from torch import nn

from vitlab.engine.clip import clip_gradients, clip_groups


def modules_with_grads(seed=0):
    torch.manual_seed(seed)
    modules = {"backbone": nn.Linear(6, 5), "dino_head": nn.Linear(5, 7), "ibot_head": nn.Linear(5, 3)}
    x = torch.randn(4, 6)
    h = modules["backbone"](x)
    (modules["dino_head"](h).pow(2).sum() * 10 + modules["ibot_head"](h).sum()).backward()
    params = [p for m in modules.values() for p in m.parameters()]
    return modules, params


def norm(params):
    return torch.stack([p.grad.norm() for p in params]).norm()


def test_global_scope_is_torchs_clip_grad_norm():
    modules, params = modules_with_grads()
    expected_params = [p.detach().clone().requires_grad_() for p in params]
    for e, p in zip(expected_params, params):
        e.grad = p.grad.clone()
    expected = torch.nn.utils.clip_grad_norm_(expected_params, 1.0)
    total, norms = clip_gradients(clip_groups(modules, params, "global"), 1.0)
    assert set(norms) == {"all"} and torch.equal(total, expected)
    for e, p in zip(expected_params, params):
        assert torch.equal(e.grad, p.grad)


def test_module_scope_clips_each_module_to_the_limit_and_reports_the_global_norm():
    modules, params = modules_with_grads()
    before = {name: norm(list(m.parameters())) for name, m in modules.items()}
    global_before = norm(params)
    small = before["ibot_head"].item() * 2  # a limit above the iBOT head's norm, below the DINO head's
    assert before["dino_head"] > small
    grads = {name: [p.grad.clone() for p in m.parameters()] for name, m in modules.items()}
    total, norms = clip_gradients(clip_groups(modules, params, "module"), small)
    torch.testing.assert_close(total, global_before)
    for name, m in modules.items():
        torch.testing.assert_close(norms[name], before[name])
        after = norm(list(m.parameters()))
        assert after <= small * (1 + 1e-5)
        if before[name] <= small:  # under the limit: untouched
            assert all(torch.equal(g, p.grad) for g, p in zip(grads[name], m.parameters()))
        else:  # scaled as a whole, direction kept
            scale = small / before[name]
            for g, p in zip(grads[name], m.parameters()):
                torch.testing.assert_close(p.grad, g * scale, rtol=1e-5, atol=1e-7)


def test_module_scope_keeps_only_the_optimizers_parameters():
    modules, params = modules_with_grads()
    groups = clip_groups(modules, params[:2], "module")  # the optimizer holds the backbone only
    assert list(groups) == ["backbone"] and len(groups["backbone"]) == 2


def test_bad_scope_names_the_field():
    modules, params = modules_with_grads()
    with pytest.raises(ValueError, match="train.clip_grad_scope.*'layer'"):
        clip_groups(modules, params, "layer")


def test_a_dino_run_clips_per_module_and_logs_each_norm(tmp_path):
    from pathlib import Path

    from vitlab.config import apply_overrides, load_config
    from vitlab.engine.logging import read_metrics
    from vitlab.engine.trainer import train

    tiny = Path(__file__).resolve().parents[1] / "configs" / "tiny_dino.py"
    cfg = apply_overrides(load_config(tiny), ["train.clip_grad_scope=module", "train.clip_grad=1e-3", "train.max_steps=2",
                                              "data.val=null", f"train.output_dir={tmp_path}"])
    train(cfg)
    rows = [r for r in read_metrics(tmp_path / "metrics.jsonl") if "train/grad_norm" in r]
    assert rows
    for row in rows:
        parts = [row[f"train/grad_norm/{m}"] for m in ("backbone", "dino_head", "ibot_head")]
        assert abs(sum(p * p for p in parts) ** 0.5 / row["train/grad_norm"] - 1) < 1e-4
