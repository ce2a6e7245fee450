"""Register / token statistics (Darcet et al. 2024): outlier fraction, token norms, CLS attention shares."""

import pytest
import torch

from tests.models.helpers import tiny
from tests.test_viz import _attention_in_forward
from vitlab.config import instantiate
from vitlab.eval.tokens import attention_shares, outlier_fraction, summarise_tokens, token_statistics
from vitlab.viz import patch_norm_maps


def test_outlier_fraction_of_known_norms():
    norms = torch.cat([torch.ones(93), torch.full((7,), 10.0)])
    assert outlier_fraction(norms) == pytest.approx(0.07)
    assert outlier_fraction(norms, factor=20.0) == 0.0


def test_token_statistics_find_constructed_high_norm_patches(monkeypatch):
    """Blocks made the identity: a patch scaled 1000x is a high-norm token, every other is not."""
    model = instantiate(tiny("HR", num_registers=2)).eval()
    monkeypatch.setattr(type(model), "run_block", lambda self, i, x, layout: x)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 12, 16, generator=g)  # a 3x4 grid of 4px patches: 48 patch tokens in all
    x[0, :, 0:4, 0:4] *= 1000  # patch (0, 0) of image 0
    x[2, :, 4:8, 8:12] *= 1000  # patch (1, 2) of image 2
    x[3, :, 8:12, 12:16] *= 1000  # patch (2, 3) of image 3
    stats = token_statistics(model, x)
    assert stats["layer0/outliers"] == pytest.approx(3 / 48) and stats["layer1/outliers"] == pytest.approx(3 / 48)
    norms = patch_norm_maps(model, x)[:, 0]
    assert norms.shape == (4, 3, 4) and norms[0, 0, 0] > 100 * norms[1].max()


@pytest.mark.parametrize("padding", [None, ["H", "R"]])
def test_cls_attention_shares_sum_to_one_and_match_the_forward(monkeypatch, padding):
    extra = {"padding_types": padding} if padding else {}
    model = instantiate(tiny("HR", num_registers=2, **extra)).eval()
    x = torch.randn(2, 3, 12, 16)
    full = _attention_in_forward(monkeypatch, model, x)  # [B, T, T], the last (only) attention block
    stats = token_statistics(model, x)
    shares = {k.split("_")[-1]: v for k, v in stats.items() if k.startswith("layer1/cls_attn_")}
    assert sum(shares.values()) == pytest.approx(1.0, abs=1e-5)
    cls_row = full[:, 12].mean(0)
    assert shares["patches"] == pytest.approx(cls_row[:12].sum().item(), abs=1e-5)
    assert shares["registers"] == pytest.approx(cls_row[13:15].sum().item(), abs=1e-5)
    assert ("padding" in shares) == (padding is not None)
    row = summarise_tokens(stats)
    assert {"outliers_max", "norm_patches", "norm_cls", "norm_registers", "cls_attn_registers"} <= set(row)


def test_attention_shares_need_a_cls_token():
    with pytest.raises(ValueError, match="num_cls=0"):
        attention_shares(torch.rand(1, 1, 5, 5), 4, 0, 1)
