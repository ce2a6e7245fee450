"""KoLeo: hand reference, lightly's KoLeoLoss, duplicates, batch size 1."""

import math

import pytest
import torch

from vitlab.ssl import KoLeoLoss, koleo_loss


def test_tiny_hand_computation():
    # Three unit vectors on the circle at 0, 90 and 180 degrees (inputs are rescaled, normalisation undoes it).
    x = torch.tensor([[2.0, 0.0], [0.0, 3.0], [-1.0, 0.0]])
    # Every nearest neighbour is 90 degrees away: distance sqrt(2).
    expected = -math.log(math.sqrt(2) + 1e-8)
    assert math.isclose(koleo_loss(x).item(), expected, rel_tol=1e-5)


def test_matches_lightly():
    """lightly's KoLeoLoss (p=2, eps=1e-8) is the same estimator: normalise, nearest neighbour by inner
    product, pairwise distance with eps, -log(d + eps) mean."""
    lightly_loss = pytest.importorskip("lightly.loss")
    torch.manual_seed(0)
    x = torch.randn(16, 8, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    ours, theirs = KoLeoLoss()(x), lightly_loss.KoLeoLoss()(x_ref)
    torch.testing.assert_close(ours, theirs)
    ours.backward()
    theirs.backward()
    torch.testing.assert_close(x.grad, x_ref.grad)


def test_duplicates_finite_with_grad():
    x = torch.randn(4, 6).repeat(2, 1).requires_grad_(True)  # every row has an exact twin
    loss = koleo_loss(x)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(x.grad).all()
    assert loss.item() > 10  # twins sit at distance ~eps: a large, finite penalty


def test_batch_size_one_raises():
    with pytest.raises(ValueError, match="B >= 2"):
        koleo_loss(torch.randn(1, 8))
