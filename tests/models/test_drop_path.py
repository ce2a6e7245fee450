"""Drop path: the branch-only function draws the same per-sample mask as the fused
residual update, for one generator state."""

import pytest
import torch

from vitlab.kernels import residual_scale_drop
import vitlab.layers
from vitlab.layers import drop_path


def test_eval_and_zero_rate_are_the_identity():
    x = torch.randn(4, 3, 8)
    assert drop_path(x, 0.5, training=False) is x
    assert drop_path(x, 0.0, training=True) is x


def test_whole_samples_dropped_or_scaled_like_the_fused_residual():
    p, x = 0.5, torch.randn(64, 3, 8)
    x[0] = float("inf")  # a dropped sample must still be exactly zero
    out = drop_path(x, p, training=True, generator=torch.Generator().manual_seed(0))
    kept = out.flatten(1).ne(0).any(dim=1)
    assert 0 < kept.sum() < 64
    torch.testing.assert_close(out[kept], x[kept] / (1 - p))
    assert torch.equal(out[~kept], torch.zeros_like(out[~kept]))
    fused = residual_scale_drop(torch.zeros_like(x), x, None, p, True, generator=torch.Generator().manual_seed(0),
                                backend="torch")
    assert torch.equal(fused.flatten(1).ne(0).any(dim=1), kept)


def test_rate_is_checked():
    with pytest.raises(ValueError, match="drop_prob must be in"):
        drop_path(torch.randn(2, 3), -0.1, training=True)


@pytest.mark.parametrize("name, new", [("DropPath", "ResidualBranch"), ("LayerScale", "layer_scale_init")])
def test_removed_names_say_what_replaces_them(name, new):
    with pytest.raises(AttributeError, match=f"{name} was removed.*{new}"):
        getattr(vitlab.layers, name)
