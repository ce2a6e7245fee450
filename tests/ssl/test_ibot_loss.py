"""iBOT patch loss: hand reference, per-image weighting, lightly's IBOTPatchLoss."""

import math

import pytest
import torch

from vitlab.ssl import iBOTPatchLoss, masked_patch_weights


def test_tiny_hand_computation():
    # Two images with 4 patches: image 0 has 2 masked, image 1 has 1, a third image none.
    masks = torch.tensor([[1, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0]], dtype=torch.bool)
    student = torch.tensor([[0.1, 0.0], [0.0, 0.0], [0.0, 0.2]])  # [M=3, K=2]
    teacher = torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])

    def ce(t, s):
        log_p = torch.log_softmax(torch.tensor(s) / 0.1, -1).tolist()
        return -(t[0] * log_p[0] + t[1] * log_p[1])

    expected = ((ce([1.0, 0.0], [0.1, 0.0]) + ce([0.5, 0.5], [0.0, 0.0])) / 2 + ce([0.0, 1.0], [0.0, 0.2])) / 3
    loss = iBOTPatchLoss(2)(student, teacher, masks)
    assert math.isclose(loss.item(), expected, rel_tol=1e-6)


def test_weights_sum_to_one_per_masked_image():
    masks = torch.tensor([[1, 1, 1, 0], [0, 0, 0, 0], [0, 1, 0, 0]], dtype=torch.bool)
    w = masked_patch_weights(masks)
    torch.testing.assert_close(w, torch.tensor([1 / 3, 1 / 3, 1 / 3, 1.0]))


def test_explicit_weights_match_default_and_empty_batch_is_zero():
    torch.manual_seed(0)
    masks = torch.rand(4, 9) < 0.4
    m = int(masks.sum())
    loss_fn = iBOTPatchLoss(16)
    student, teacher = torch.randn(m, 16), loss_fn.teacher_probs(torch.randn(m, 16), 0.07)
    torch.testing.assert_close(loss_fn(student, teacher, masks),
                               loss_fn(student, teacher, masks, masked_patch_weights(masks)))
    empty = torch.zeros(4, 9, dtype=torch.bool)
    zero = loss_fn(torch.randn(0, 16), loss_fn.teacher_probs(torch.randn(0, 16), 0.07), empty)
    assert zero.item() == 0.0


def test_sinkhorn_teacher_stable():
    probs = iBOTPatchLoss(64).teacher_probs(torch.randn(40, 64) * 100, 0.04)
    assert torch.isfinite(probs).all()
    torch.testing.assert_close(probs.sum(-1), torch.ones(40))


def test_matches_lightly_with_softmax_centering():
    """lightly's IBOTPatchLoss: softmax centering with a zero-initialised EMA center over the masked
    tokens, weights 1 / (masked in image), sum over patches / number of images. Same definition."""
    lightly_loss = pytest.importorskip("lightly.loss")
    torch.manual_seed(1)
    k, temp, h, w = 20, 0.06, 3, 4
    ours = iBOTPatchLoss(k, centering="softmax")
    theirs = lightly_loss.IBOTPatchLoss(output_dim=k, teacher_temp=temp, student_temp=0.1, center_momentum=0.9)
    for _ in range(3):
        masks = torch.rand(5, h, w) < 0.5
        m = int(masks.sum())
        teacher_logits, student_logits = torch.randn(m, k), torch.randn(m, k)
        expected = theirs(teacher_logits, student_logits, masks, teacher_temp=temp)
        got = ours(student_logits, ours.teacher_probs(teacher_logits, temp), masks.flatten(1))
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(ours.center.center, theirs.center.value.reshape(1, k))
