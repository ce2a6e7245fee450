"""vitlab's LAMB against timm's (apex FusedLAMB's update in plain torch), step by step on fresh gradients."""

import copy

import pytest
import torch
from timm.optim import Lamb as TimmLamb

from vitlab.config import L
from vitlab.engine.lamb import Lamb
from vitlab.engine.optim import build_optimizer, param_groups

SHAPES = [(16, 8), (8,), (4, 3, 2, 2), (5,)]


def make_params(seed):
    g = torch.Generator().manual_seed(seed)
    params = [torch.nn.Parameter(torch.randn(s, generator=g)) for s in SHAPES]
    params.append(torch.nn.Parameter(torch.zeros(3, 3)))  # ||w|| = 0: trust ratio 1
    return params


def groups(params, weight_decay):
    # decayed matrices, and a no-decay group at another lr (as the trainer's parameter groups)
    return [{"params": [params[0], params[2], params[4]], "weight_decay": weight_decay, "lr": 4e-3},
            {"params": [params[1], params[3]], "weight_decay": 0.0, "lr": 1e-3}]


def run(opt, params, seed, steps, clip=None):
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        for p in params:
            p.grad = torch.randn(p.shape, generator=g) * 3.0  # fresh each step
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(params, clip)  # what the trainer does before the step
        opt.step()


@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
@pytest.mark.parametrize("always_adapt", [False, True])
def test_matches_timm_lamb(weight_decay, always_adapt):
    ours, theirs = make_params(0), make_params(0)
    run(Lamb(groups(ours, weight_decay), betas=(0.9, 0.999), eps=1e-8, always_adapt=always_adapt), ours, 1, 6)
    run(TimmLamb(groups(theirs, weight_decay), betas=(0.9, 0.999), eps=1e-8, max_grad_norm=None,
                 always_adapt=always_adapt), theirs, 1, 6)
    for a, b, p0 in zip(ours, theirs, make_params(0)):
        assert not torch.equal(a, p0)
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_trainer_clipping_then_lamb_is_apex_clipping():
    """apex FusedLAMB (and timm's Lamb) clip the global gradient norm to 1.0 inside the step; the trainer's
    ``clip_grad_norm_`` before our step gives the same update."""
    ours, theirs = make_params(2), make_params(2)
    run(Lamb(groups(ours, 0.05), eps=1e-8), ours, 3, 4, clip=1.0)
    run(TimmLamb(groups(theirs, 0.05), eps=1e-8, max_grad_norm=1.0), theirs, 3, 4)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_trust_ratio_moves_each_tensor_by_lr_times_its_norm():
    """With weight decay, the first step moves every nonzero tensor by lr * ||w|| exactly."""
    params = make_params(4)
    before = [p.detach().clone() for p in params]
    run(Lamb([{"params": params, "weight_decay": 0.1}], lr=0.01), params, 5, 1)
    for p, b in zip(params[:-1], before[:-1]):
        assert (p - b).norm().item() == pytest.approx(0.01 * b.norm().item(), rel=1e-5)


def test_builds_from_config_and_resumes_exactly():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.LayerNorm(5), torch.nn.Linear(5, 2))
    opt = build_optimizer(L(Lamb)(betas=[0.9, 0.999], eps=1e-8), param_groups({"model": model}))
    assert isinstance(opt, Lamb) and {g["wd_scale"] for g in opt.param_groups} == {0.0, 1.0}
    for g in opt.param_groups:
        g["lr"], g["weight_decay"] = 1e-2, 0.05 * g["wd_scale"]

    def step(m, o, seed):
        x = torch.randn(8, 6, generator=torch.Generator().manual_seed(seed))
        o.zero_grad()
        m(x).square().mean().backward()
        o.step()

    step(model, opt, 0)
    clone = copy.deepcopy(model)
    opt2 = build_optimizer(L(Lamb)(betas=[0.9, 0.999], eps=1e-8), param_groups({"model": clone}))
    opt2.load_state_dict(copy.deepcopy(opt.state_dict()))  # a checkpoint's copy: no shared moments
    for seed in (1, 2):
        step(model, opt, seed)
        step(clone, opt2, seed)
    for a, b in zip(model.parameters(), clone.parameters()):
        assert torch.equal(a, b)


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="betas"):
        Lamb([torch.nn.Parameter(torch.ones(2))], betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="weight_decay"):
        Lamb([torch.nn.Parameter(torch.ones(2))], weight_decay=-1.0)
