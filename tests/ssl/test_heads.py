"""DINOHead: shapes, L2 bottleneck, init, weight norm option, meta device."""

import pytest
import torch

from vitlab.ssl import DINOHead


def test_shapes_and_structure():
    head = DINOHead(32, 100, hidden_features=64, bottleneck_dim=16)
    assert head(torch.randn(5, 32)).shape == (5, 100)
    assert head(torch.randn(2, 7, 32)).shape == (2, 7, 100)  # patch tokens
    linears = [m for m in head.mlp if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(32, 64), (64, 64), (64, 16)]
    assert sum(isinstance(m, torch.nn.GELU) for m in head.mlp) == 2
    assert head.last_layer.bias is None and head.last_layer.weight.shape == (100, 16)


def test_one_layer():
    head = DINOHead(8, 10, nlayers=1, bottleneck_dim=4)
    assert len(head.mlp) == 1 and head(torch.randn(3, 8)).shape == (3, 10)


def test_bottleneck_is_l2_normalised():
    head = DINOHead(16, 12, hidden_features=32, bottleneck_dim=8)
    x = torch.randn(6, 16)
    z = torch.nn.functional.normalize(head.mlp(x), dim=-1)
    torch.testing.assert_close(head(x), z @ head.last_layer.weight.T)
    # Scaling the bottleneck does not change the logits, only its direction matters.
    torch.testing.assert_close(head.last_layer(z * 3) / 3, head(x))


def test_trunc_normal_init():
    torch.manual_seed(0)
    head = DINOHead(256, 4096, hidden_features=256, bottleneck_dim=256)
    w = head.last_layer.weight
    assert abs(w.std().item() - 0.02) < 0.002 and w.abs().max() <= 2.0
    assert all(m.bias.abs().max() == 0 for m in head.mlp if isinstance(m, torch.nn.Linear))


def test_weight_norm_gives_unit_prototypes_with_frozen_gain():
    head = DINOHead(16, 12, hidden_features=32, bottleneck_dim=8, weight_norm=True)
    torch.testing.assert_close(head.last_layer.weight.norm(dim=1), torch.ones(12))
    assert head(torch.randn(4, 16)).abs().max() <= 1 + 1e-5  # cosines
    trainable = {n for n, p in head.named_parameters() if p.requires_grad}
    assert "last_layer.parametrizations.weight.original0" not in trainable
    assert "last_layer.parametrizations.weight.original1" in trainable


def test_train_gain_lets_the_logits_grow_past_cosines():
    torch.manual_seed(0)
    head = DINOHead(16, 12, hidden_features=32, bottleneck_dim=8, weight_norm=True, train_gain=True)
    gain = head.last_layer.parametrizations.weight.original0
    assert gain.requires_grad and torch.equal(gain, torch.ones(12, 1))
    with torch.no_grad():
        gain.mul_(3.0)
    torch.testing.assert_close(head.last_layer.weight.norm(dim=1), torch.full((12,), 3.0))
    assert head(torch.randn(4, 16)).abs().max() > 1.0
    with pytest.raises(ValueError, match="train_gain=True needs weight_norm=True"):
        DINOHead(16, 12, weight_norm=False, train_gain=True)


def test_meta_device_and_dtype():
    head = DINOHead(64, 65536, device="meta")
    assert all(p.is_meta for p in head.parameters())
    assert DINOHead(8, 4, hidden_features=8, bottleneck_dim=4, dtype=torch.float64).last_layer.weight.dtype == torch.float64
