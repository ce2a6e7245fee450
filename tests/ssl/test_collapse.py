"""Collapse watch: the two collapse modes, judged from the loss's target, and a healthy batch."""

import math

import torch

from vitlab.ssl import collapse_stats, teacher_entropy


def test_entropy():
    k = 8
    assert math.isclose(teacher_entropy(torch.full((4, k), 1 / k)).item(), math.log(k), rel_tol=1e-6)
    assert teacher_entropy(torch.eye(k)).item() == 0.0


def test_uniform_collapse_needs_the_whole_window():
    k = 100
    uniform = torch.full((2, 16, k), 1 / k)
    ln_k = math.log(k)
    stats = collapse_stats(uniform, [ln_k * 1.005] * 20, k)
    assert stats["loss_at_ln_k"] and stats["collapsed"] and not stats["dominant_prototype"]
    assert math.isclose(stats["entropy"], ln_k, rel_tol=1e-6) and stats["ln_k"] == ln_k
    sharp = torch.softmax(torch.randn(32, k) * 5, -1)
    early = collapse_stats(sharp, [ln_k * 1.2] + [ln_k] * 19, k)  # one step off: not yet
    assert not early["collapsed"]


def test_a_uniform_target_is_collapse_even_while_the_loss_is_below_ln_k():
    k = 64
    ln_k = math.log(k)
    uniform = torch.full((2, 8, k), 1 / k)
    stats = collapse_stats(uniform, [0.5 * ln_k] * 5, k, target_entropies=[ln_k] * 5)
    assert stats["target_at_ln_k"] and not stats["loss_at_ln_k"] and stats["collapsed"]
    # one earlier step whose target was informative: not (yet) a collapse
    stats = collapse_stats(uniform, [0.5 * ln_k] * 5, k, target_entropies=[0.5 * ln_k] + [ln_k] * 4)
    assert not stats["target_at_ln_k"] and not stats["collapsed"]


def test_dominant_prototype():
    k = 10
    probs = torch.zeros(32, k)
    probs[:, 3] = 1.0
    stats = collapse_stats(probs, 0.01, k)
    assert stats["dominant_prototype"] and stats["collapsed"] and stats["max_prototype_share"] == 1.0
    assert stats["marginal_entropy"] == 0.0


def test_healthy_batch():
    k = 64
    probs = torch.softmax(torch.randn(128, k) * 5, -1)
    stats = collapse_stats(probs, torch.tensor(2.5), k)
    assert not stats["collapsed"] and stats["max_prototype_share"] < 0.5
