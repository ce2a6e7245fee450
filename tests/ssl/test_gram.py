"""Gram anchoring: zero on identical inputs, hand computation, options, snapshots."""

import pytest
import torch
import torch.nn.functional as F

from vitlab.ssl import GramTeacher, gram_loss, resize_patch_features, snapshot_into


def test_zero_for_identical_inputs():
    x = torch.randn(2, 5, 8)
    assert gram_loss(x, x.clone()).item() == pytest.approx(0.0, abs=1e-12)
    assert gram_loss(x, x * 3.0).item() == pytest.approx(0.0, abs=1e-10)  # normalisation removes scale


def test_hand_computation():
    # One image, two patches in 2-D.
    student = torch.tensor([[[1.0, 0.0], [1.0, 1.0]]])
    teacher = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])
    c = 1 / 2 ** 0.5  # student cosine between its two patches; the teacher's is 0
    expected = (0 + c ** 2 + c ** 2 + 0) / 4
    assert gram_loss(student, teacher).item() == pytest.approx(expected, rel=1e-6)
    # Without normalisation the raw inner products are compared: [[1, 1], [1, 2]] vs [[1, 0], [0, 4]].
    assert gram_loss(student, teacher, normalize=False).item() == pytest.approx((0 + 1 + 1 + 4) / 4)


def test_batch_level_and_negatives():
    torch.manual_seed(0)
    s, t = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    sn, tn = F.normalize(s, dim=-1).flatten(0, 1), F.normalize(t, dim=-1).flatten(0, 1)
    gs, gt = sn @ sn.T, tn @ tn.T
    torch.testing.assert_close(gram_loss(s, t, img_level=False), F.mse_loss(gs, gt))
    torch.testing.assert_close(gram_loss(s.flatten(0, 1), t.flatten(0, 1), img_level=False), F.mse_loss(gs, gt))
    torch.testing.assert_close(gram_loss(s, t, img_level=False, remove_neg=True),
                               F.mse_loss(gs.clamp(min=0), gt.clamp(min=0)))
    gs_only = gs.masked_fill((gs < 0) & (gt < 0), 0.0)
    torch.testing.assert_close(gram_loss(s, t, img_level=False, remove_only_teacher_neg=True),
                               F.mse_loss(gs_only, gt.clamp(min=0)))
    with pytest.raises(ValueError):
        gram_loss(s, t, remove_neg=True, remove_only_teacher_neg=True)


def test_gradient_reaches_student_only():
    s = torch.randn(2, 4, 6, requires_grad=True)
    t = torch.randn(2, 4, 6, requires_grad=True)
    gram_loss(s, t).backward()
    assert s.grad is not None and torch.isfinite(s.grad).all() and t.grad is None


def test_resize_patch_features():
    x = torch.randn(2, 4 * 6, 5)
    assert resize_patch_features(x, (4, 6), (2, 3)).shape == (2, 6, 5)
    torch.testing.assert_close(resize_patch_features(x, (4, 6), (4, 6)), x)


def test_snapshot_into_copies_backbone_from_larger_module():
    src = torch.nn.ModuleDict({"backbone": torch.nn.Linear(3, 3), "dino_head": torch.nn.Linear(3, 2)})
    dst = torch.nn.ModuleDict({"backbone": torch.nn.Linear(3, 3)})
    snapshot_into(dst, src)
    assert torch.equal(dst["backbone"].weight, src["backbone"].weight)
    assert dst["backbone"].weight.data_ptr() != src["backbone"].weight.data_ptr()
    with pytest.raises(KeyError):
        snapshot_into(src, dst)


def test_gram_teacher_schedule():
    ema = torch.nn.Linear(2, 2)
    gram = GramTeacher.from_teacher(ema, load_step=5, update_every=10, first_update_step=20, max_updates=2)
    assert not any(p.requires_grad for p in gram.parameters())
    with pytest.raises(RuntimeError):
        gram(torch.randn(1, 2))
    refreshed = []
    for step in range(60):
        with torch.no_grad():
            ema.weight.fill_(float(step))
        if gram.maybe_refresh(step, ema):
            refreshed.append(step)
    assert refreshed == [5, 20, 30]  # load, then two periodic refreshes (max_updates=2)
    assert gram.module.weight[0, 0].item() == 30.0  # frozen since the last snapshot
    # The refresh count survives a checkpoint round trip.
    clone = GramTeacher.from_teacher(ema, load_step=5, update_every=10, first_update_step=20, max_updates=2)
    clone.load_state_dict(gram.state_dict())
    assert clone.num_updates == 2 and clone.initialized
    gram.train()
    assert not gram.module.training
