"""DINO loss: hand-computed reference, DINOv3's global/local mix, lightly's DINOLoss."""

import math

import pytest
import torch

from vitlab.ssl import DINOLoss


def loop_reference(student_logits, teacher_probs, student_temp, ignore_diagonal=True):
    n_s, batch, _ = student_logits.shape
    n_t = teacher_probs.shape[0]
    total, count = 0.0, 0
    for b in range(batch):
        for s in range(n_s):
            log_p = torch.log_softmax(student_logits[s, b].double() / student_temp, -1)
            for t in range(n_t):
                if ignore_diagonal and s == t:
                    continue
                total += -(teacher_probs[t, b].double() * log_p).sum().item()
                count += 1
    return total / count


@pytest.mark.parametrize("ignore_diagonal", [True, False])
def test_matches_loop_reference(ignore_diagonal):
    torch.manual_seed(0)
    student = torch.randn(6, 3, 10)  # 2 global + 4 local crops
    teacher = torch.softmax(torch.randn(2, 3, 10), -1)
    loss = DINOLoss(10)(student, teacher, ignore_diagonal=ignore_diagonal)
    assert math.isclose(loss.item(), loop_reference(student, teacher, 0.1, ignore_diagonal), rel_tol=1e-5)


def test_tiny_hand_computation():
    # One image, K = 2, student crops are (global 0, local); teacher has global 0 only.
    student = torch.tensor([[[0.0, 0.0]], [[0.1, 0.0]]])
    teacher = torch.tensor([[[0.25, 0.75]]])
    # Only the pair (local, global 0) counts: student probs softmax([1, 0]).
    p = math.exp(1) / (math.exp(1) + 1)
    expected = -(0.25 * math.log(p) + 0.75 * math.log(1 - p))
    assert math.isclose(DINOLoss(2)(student, teacher).item(), expected, rel_tol=1e-6)


def test_equals_dinov3_global_local_mix():
    torch.manual_seed(1)
    n_global, n_local, batch, k = 2, 5, 4, 16
    student = torch.randn(n_global + n_local, batch, k)
    loss_fn = DINOLoss(k)
    teacher = loss_fn.teacher_probs(torch.randn(n_global, batch, k), 0.07)
    global_terms, local_terms = n_global * (n_global - 1), n_global * n_local
    mixed = (global_terms * loss_fn(student[:n_global], teacher)
             + local_terms * loss_fn(student[n_global:], teacher, ignore_diagonal=False)) / (global_terms + local_terms)
    torch.testing.assert_close(loss_fn(student, teacher), mixed)
    # parts=True gives the same loss and its two terms apart (the global term alone without local crops)
    loss, terms = loss_fn(student, teacher, parts=True)
    torch.testing.assert_close(loss, mixed)
    torch.testing.assert_close(terms["global"], loss_fn(student[:n_global], teacher))
    torch.testing.assert_close(terms["local"], loss_fn(student[n_global:], teacher, ignore_diagonal=False))
    assert set(loss_fn(student[:n_global], teacher, parts=True)[1]) == {"global"}


def test_teacher_probs_sinkhorn_rows_sum_to_one_and_grad_flows():
    loss_fn = DINOLoss(32)
    teacher = loss_fn.teacher_probs(torch.randn(2, 8, 32) * 100, 0.04)
    assert teacher.shape == (2, 8, 32) and torch.isfinite(teacher).all()
    torch.testing.assert_close(teacher.sum(-1), torch.ones(2, 8))
    student = torch.randn(10, 8, 32, requires_grad=True)
    loss = loss_fn(student, teacher)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(student.grad).all()


def test_no_pairs_raises():
    with pytest.raises(ValueError):
        DINOLoss(4)(torch.randn(1, 2, 4), torch.softmax(torch.randn(1, 2, 4), -1))


def test_bad_centering_raises():
    with pytest.raises(ValueError):
        DINOLoss(4, centering="mean")


def test_matches_lightly_with_softmax_centering():
    """lightly's DINOLoss = softmax centering with a zero-initialised EMA center, applied before the
    update, and the same diagonal-free mean. Its teacher list holds the global crops, its student list
    the global crops first: the same convention as ours."""
    lightly_loss = pytest.importorskip("lightly.loss")
    torch.manual_seed(2)
    k, temp = 24, 0.05
    ours = DINOLoss(k, centering="softmax", center_momentum=0.9)
    theirs = lightly_loss.DINOLoss(output_dim=k, teacher_temp=temp, student_temp=0.1, center_momentum=0.9)
    for _ in range(3):  # several steps, so the center updates are compared too
        teacher_logits = torch.randn(2, 5, k)
        student_logits = torch.randn(6, 5, k)
        expected = theirs(list(teacher_logits), list(student_logits), teacher_temp=temp)
        got = ours(student_logits, ours.teacher_probs(teacher_logits, temp))
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(ours.center.center, theirs.center.reshape(1, k))
