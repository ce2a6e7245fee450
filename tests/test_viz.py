import torch

from tests.models.helpers import tiny
from vitlab.config import instantiate
from vitlab.mixers import Attention
from vitlab.viz import attention_maps, pca_rgb


def test_pca_rgb_range_and_shape():
    feats = torch.randn(2, 3, 4, 16)
    rgb = pca_rgb(feats)
    assert rgb.shape == (2, 3, 3, 4)
    assert rgb.min() >= 0 and rgb.max() <= 1
    assert torch.allclose(rgb.amax(dim=(0, 2, 3)), torch.ones(3))


def _attention_in_forward(monkeypatch, model, x):
    """softmax(q k^T / sqrt(d)) of the last attention block, from the q and k its forward attends with."""
    captured = {}
    original = Attention._attend

    def spy(self, q, k, v):
        captured["q"], captured["k"] = q, k
        return original(self, q, k, v)

    monkeypatch.setattr(Attention, "_attend", spy)
    with torch.no_grad():
        model(x)
    monkeypatch.undo()
    q, k = captured["q"], captured["k"]
    return (q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5).softmax(-1).mean(1)  # [B, T, T] (mean over heads)


def test_attention_maps_match_the_block_attention(monkeypatch):
    model = instantiate(tiny("HRH", num_registers=2)).eval()
    x = torch.randn(2, 3, 12, 16)
    full = _attention_in_forward(monkeypatch, model, x)
    expected = full[:, 12:15, :12].reshape(2, 3, 3, 4)
    torch.testing.assert_close(attention_maps(model, x), expected)


def test_attention_maps_of_a_padded_attention_block(monkeypatch):
    """An attention block in padding_types attends over the zero padding too: so must its maps."""
    model = instantiate(tiny("HR", num_registers=1, padding_types=["H", "R"])).eval()
    x = torch.randn(2, 3, 16, 16)  # 16 patches + CLS + 1 register = 18, padded to 20
    full = _attention_in_forward(monkeypatch, model, x)
    assert full.shape[-1] == 20
    torch.testing.assert_close(attention_maps(model, x), full[:, 16:18, :16].reshape(2, 2, 4, 4))
