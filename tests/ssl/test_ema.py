"""EMA update math."""

import copy

import pytest
import torch

from vitlab.ssl import ema_update


def make_pair():
    torch.manual_seed(0)
    student = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3))
    teacher = copy.deepcopy(student)
    for p in student.parameters():
        p.data.add_(torch.randn_like(p))
    return teacher, student


def test_update_math():
    teacher, student = make_pair()
    before = [p.clone() for p in teacher.parameters()]
    ema_update(teacher, student, 0.9)
    for t, t0, s in zip(teacher.parameters(), before, student.parameters()):
        torch.testing.assert_close(t, 0.9 * t0 + 0.1 * s)
        assert not t.requires_grad or t.grad is None


def test_momentum_one_and_zero():
    teacher, student = make_pair()
    before = [p.clone() for p in teacher.parameters()]
    ema_update(teacher, student, 1.0)
    assert all(torch.equal(t, b) for t, b in zip(teacher.parameters(), before))
    ema_update(teacher, student, 0.0)
    assert all(torch.equal(t, s) for t, s in zip(teacher.parameters(), student.parameters()))


def test_no_autograd_history():
    teacher, student = make_pair()
    ema_update(teacher, student, 0.5)
    assert all(p.grad_fn is None for p in teacher.parameters())


def test_mismatch_raises():
    with pytest.raises(ValueError):
        ema_update(torch.nn.Linear(4, 3), torch.nn.Linear(4, 2), 0.9)
    with pytest.raises(ValueError):
        ema_update(torch.nn.Linear(4, 3), torch.nn.Linear(4, 3), 1.5)
