"""The DINOv3 presets: they are the converter's configs, their FLOPs match timm's published numbers,
their parameter counts match the reference implementations, and the attention they use is
equivariant to the token order (which is what makes vitlab's layout run DINOv3 exactly)."""

from pathlib import Path

import pytest
import torch

from vitlab.config import L, instantiate, load_config
from vitlab.convert import DINOV3_ARCHS, dinov3_arch, dinov3_model_config
from vitlab.layers import RotaryEmbedding2D
from vitlab.mixers import Attention
from vitlab.models import TokenLayout

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "models"


def _preset(name):
    return load_config(CONFIGS / f"dinov3_{name}.py").model


@pytest.mark.parametrize("name", list(DINOV3_ARCHS))
def test_preset_is_the_converter_config(name):
    assert _preset(name) == dinov3_model_config(name)


def test_vits16_flops_match_timm():
    """timm's table: vit_small_patch16_dinov3 at 256 x 256 is 6.26 GMACs = 12.5 GFLOPs."""
    model = instantiate(_preset("vits16"), device="meta")
    flops = model.flop_count(image_size=(256, 256))
    assert abs(flops / 2 - 6.26e9) / 6.26e9 < 0.02, flops / 2e9


def _hf_count(arch) -> int:
    from transformers import DINOv3ViTConfig, DINOv3ViTModel

    gated = arch.ffn_layer == "swiglu"
    config = DINOv3ViTConfig(
        hidden_size=arch.embed_dim, num_hidden_layers=arch.depth, num_attention_heads=arch.num_heads,
        intermediate_size=arch.hidden_features, use_gated_mlp=gated, hidden_act="silu" if gated else "gelu",
        num_register_tokens=arch.num_registers,
        key_bias=True,  # DINOv3 stores the (masked) key bias as a parameter, as vitlab does
    )
    with torch.device("meta"):
        return sum(p.numel() for p in DINOv3ViTModel(config).parameters())


@pytest.mark.parametrize("name", list(DINOV3_ARCHS))
def test_parameter_count_matches_hf(name):
    pytest.importorskip("transformers")
    ours = sum(p.numel() for p in instantiate(_preset(name), device="meta").parameters())
    assert ours == _hf_count(dinov3_arch(name))


def test_parameter_count_matches_timm():
    """timm's ``_qkvb`` ViT-S keeps q and v biases but neither the key bias (a zero buffer) nor the mask token."""
    timm = pytest.importorskip("timm")
    with torch.device("meta"):
        ref = sum(p.numel() for p in timm.create_model("vit_small_patch16_dinov3_qkvb").parameters())
    ours = sum(p.numel() for p in instantiate(_preset("vits16"), device="meta").parameters())
    D, depth = 384, 12
    assert ours == ref + D * depth + D


def test_attention_is_permutation_equivariant():
    """Attention(P x) = P Attention(x) for any permutation P of the tokens: without RoPE, any P; with
    RoPE, any P that keeps the rotated (patch) tokens in place, e.g. moving CLS and registers around."""
    layout = TokenLayout(4, 6, 1, 4)  # 24 patches, CLS, 4 registers
    x = torch.randn(2, layout.num_tokens, 64)
    plain = Attention(64, num_heads=4).eval()
    perm = torch.randperm(layout.num_tokens)
    torch.testing.assert_close(plain(x[:, perm], layout), plain(x, layout)[:, perm], atol=1e-5, rtol=0)
    rope = Attention(64, num_heads=4, rope_layer=L(RotaryEmbedding2D)(base=100.0)).eval()
    n = layout.num_patches
    perm = torch.cat((torch.arange(n), n + torch.randperm(5)))
    torch.testing.assert_close(rope(x[:, perm], layout), rope(x, layout)[:, perm], atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", list(DINOV3_ARCHS))
def test_released_shapes_infer_the_preset(name):
    """A released checkpoint converted without ``arch`` gets exactly the preset's config."""
    from vitlab.convert.dinov3_official import official_arch, vitlab_to_official

    arch = dinov3_arch(name)
    official = vitlab_to_official(instantiate(_preset(name), device="meta").state_dict(), arch)
    assert official_arch(official) == arch
    assert dinov3_model_config(official_arch(official)) == _preset(name)


def test_reference_configs_infer_the_preset():
    """HF's default DINOv3ViTConfig (+ 4 registers) and timm's qkvb ViT-S are the released ViT-S/16."""
    from vitlab.convert.dinov3_hf import hf_arch
    from vitlab.convert.dinov3_timm import timm_arch

    transformers = pytest.importorskip("transformers")
    timm = pytest.importorskip("timm")
    assert hf_arch(transformers.DINOv3ViTConfig(num_register_tokens=4)) == dinov3_arch("vits16")
    with torch.device("meta"):
        sd = timm.create_model("vit_small_patch16_dinov3_qkvb").state_dict()
    assert timm_arch(sd) == dinov3_arch("vits16")


def test_arch_ffn_act_is_checked_and_has_one_spelling_for_dinov3s_own():
    from vitlab.convert import DINOv3Arch

    with pytest.raises(ValueError, match="ffn_act must be None or one of .*, got 'geglu'"):
        DINOv3Arch(embed_dim=384, depth=12, num_heads=6, ffn_act="geglu")
    assert DINOv3Arch(embed_dim=384, depth=12, num_heads=6, ffn_layer="swiglu", ffn_ratio=6.0, ffn_act="silu") \
        == dinov3_arch("vits16plus")
    geglu = DINOv3Arch(embed_dim=384, depth=12, num_heads=6, ffn_layer="swiglu", ffn_ratio=6.0, ffn_act="gelu")
    act = dinov3_model_config(geglu).block_layer.ffn_layer.act_layer
    assert geglu.ffn_act == "gelu" and act == L(torch.nn.GELU)(approximate="none")
