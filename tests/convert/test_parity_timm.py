"""vitlab runs timm's DINOv3 Eva models exactly (CLS, registers, patches after the final norm, 1e-4 fp32,
eval mode): the full ViT-S/16, and small variants with 0 registers, SwiGLU and the q/v-bias (qkvb) form."""

import pytest
import torch

from tests.convert.helpers import max_diffs, randomize_, split_dinov3_tokens
from vitlab.convert import dinov3_from_timm

timm = pytest.importorskip("timm")

TOL = 1e-4


def _timm(name, seed=0, **kwargs):
    torch.manual_seed(seed)
    return randomize_(timm.create_model(name, pretrained=False, **kwargs), seed).eval()


def _check(model, ours, sizes, registers, batch=2):
    for size in sizes:
        x = torch.randn(batch, 3, *size)
        with torch.no_grad():
            ref = split_dinov3_tokens(model.forward_features(x), registers)
            diffs = max_diffs(ours.forward_features(x), ref)
        assert max(diffs.values()) <= TOL, (size, diffs)


def test_timm_vit_small_dinov3():
    t = _timm("vit_small_patch16_dinov3")
    ours = dinov3_from_timm(t)
    assert not ours.training and ours.num_registers == 4
    _check(t, ours, [(224, 224), (64, 96)], registers=4, batch=1)


SMALL = {
    "swiglu-qkvb": ("vit_small_plus_patch16_dinov3_qkvb", dict(num_reg_tokens=4)),
    "mlp-0reg": ("vit_small_patch16_dinov3", dict(num_reg_tokens=0)),
    "swiglu-0reg": ("vit_small_plus_patch16_dinov3", dict(num_reg_tokens=0)),
}


@pytest.mark.parametrize("case", list(SMALL))
def test_timm_small(case):
    name, kwargs = SMALL[case]
    t = _timm(name, embed_dim=192, depth=2, num_heads=3, **kwargs)
    ours = dinov3_from_timm(t)
    _check(t, ours, [(64, 96), (96, 48)], registers=kwargs["num_reg_tokens"])


def test_timm_state_dict_file(tmp_path):
    """A state-dict file: the head count is not stored, so a non-released shape needs num_heads."""
    t = _timm("vit_small_patch16_dinov3_qkvb", embed_dim=192, depth=2, num_heads=3)
    path = tmp_path / "timm.pth"
    torch.save(t.state_dict(), path)
    with pytest.raises(ValueError, match="num_heads"):
        dinov3_from_timm(path)
    ours = dinov3_from_timm(path, num_heads=3)
    _check(t, ours, [(64, 64)], registers=4)


def test_timm_model_activation_is_carried_over():
    """A state dict does not hold the FFN activation; a timm model does, and the converter reads it."""
    t = _timm("vit_small_plus_patch16_dinov3", embed_dim=192, depth=2, num_heads=3, num_reg_tokens=4)
    for block in t.blocks:
        block.mlp.act = torch.nn.GELU()  # a GeGLU
    ours = dinov3_from_timm(t)
    assert all(type(b.ffn.act) is torch.nn.GELU for b in ours.blocks)
    _check(t, ours, [(64, 96)], registers=4)
    t.blocks[0].mlp.act = torch.nn.ELU()
    with pytest.raises(ValueError, match=r"FFN activation ELU\(alpha=1.0\) \(blocks.0.mlp.act\)"):
        dinov3_from_timm(t)
