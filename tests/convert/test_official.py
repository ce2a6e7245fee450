"""Official facebookresearch/dinov3 state dicts: parity with the HF model they were made from (HF ->
official names following transformers' conversion script), exact round trips, the untied CLS norm,
bf16-rounded RoPE periods, and errors that name every bad key."""

import pytest
import torch
import torch.nn.functional as F

from tests.convert.helpers import (
    hf_model,
    hf_to_official_state_dict,
    max_diffs,
    randomize_,
    split_dinov3_tokens,
)
from vitlab.config import L, instantiate
from vitlab.convert import (
    StateDictMismatchError,
    dinov3_from_official,
    dinov3_model_config,
    dinov3_to_official,
)
from vitlab.layers import LayerNorm, Mlp
from vitlab.mixers import Hyena2D
from vitlab.models import Block

pytest.importorskip("transformers")

TOL = 1e-4


@pytest.mark.parametrize("kwargs", [dict(layers=3, registers=4), dict(layers=2, registers=0, gated=True, intermediate=512)],
                         ids=["mlp-4reg", "swiglu-0reg"])
def test_official_parity_with_hf(kwargs):
    hf = hf_model(**kwargs)
    sd = hf_to_official_state_dict(hf)
    ours = dinov3_from_official(sd)  # architecture inferred from the shapes (heads from rope_embed.periods)
    assert ours.blocks[0].mixer.num_heads == 3 and not ours.training
    for size in [(64, 96), (80, 48)]:
        x = torch.randn(2, 3, *size)
        with torch.no_grad():
            ref = split_dinov3_tokens(hf(x).last_hidden_state, kwargs["registers"])
            diffs = max_diffs(ours.forward_features(x), ref)
        assert max(diffs.values()) <= TOL, (size, diffs)


def test_gated_ffn_with_another_activation_does_not_export():
    """Official DINOv3 checkpoints hold no activation (SwiGLU is SiLU): a GeGLU model must not pass for one."""
    from vitlab.convert import arch_of_model, dinov3_from_hf

    model, cfg = dinov3_from_hf(hf_model(layers=1, registers=0, gated=True, hidden_act="gelu"), return_config=True)
    arch = arch_of_model(model)
    assert (arch.ffn_layer, arch.ffn_act) == ("swiglu", "gelu")
    assert dinov3_model_config(arch) == cfg
    with pytest.raises(ValueError, match="FFN activation is 'gelu'; DINOv3's swiglu FFN has 'silu' built in"):
        dinov3_to_official(model)


def test_round_trips_are_exact():
    sd = hf_to_official_state_dict(hf_model(layers=2, registers=4, gated=True, intermediate=512))
    model = dinov3_from_official(sd)
    back = dinov3_to_official(model)
    assert back.keys() == sd.keys()
    assert all(torch.equal(back[k], sd[k].to(back[k].dtype)) for k in sd)
    again = dinov3_from_official(back)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))


def test_to_official_of_a_vitlab_trained_model():
    """A model built from a preset-style config (not converted) exports and reloads identically."""
    cfg = dinov3_model_config("vits16").copy()
    cfg.dim, cfg.num_blocks, cfg.block_layer.mixer_layer.num_heads = 128, 2, 2
    model = randomize_(instantiate(cfg)).eval()
    sd = dinov3_to_official(model)
    assert sd["blocks.0.attn.qkv.bias_mask"].tolist() == [1.0] * 128 + [0.0] * 128 + [1.0] * 128
    assert sd["rope_embed.periods"].shape == (16,) and sd["mask_token"].shape == (1, 128)
    reloaded = dinov3_from_official(sd, num_heads=2)
    x = torch.randn(1, 3, 32, 48)
    with torch.no_grad():
        assert torch.equal(model(x), reloaded(x))


def test_untied_cls_norm():
    sd = hf_to_official_state_dict(hf_model(layers=2, registers=4))
    sd["cls_norm.weight"], sd["cls_norm.bias"] = 1 + 0.3 * torch.randn(192), 0.3 * torch.randn(192)
    ours = dinov3_from_official(sd)
    assert ours.cls_norm is not None
    x = torch.randn(1, 3, 48, 64)
    with torch.no_grad():
        out = ours.forward_features(x)
    n = 12
    prenorm = out["prenorm"]
    cls_reg = F.layer_norm(prenorm[:, n:], (192,), sd["cls_norm.weight"], sd["cls_norm.bias"], eps=1e-5)
    patches = F.layer_norm(prenorm[:, :n], (192,), sd["norm.weight"], sd["norm.bias"], eps=1e-5)
    assert torch.allclose(out["cls"], cls_reg[:, 0], atol=1e-6)
    assert torch.allclose(out["registers"], cls_reg[:, 1:], atol=1e-6)
    assert torch.allclose(out["patches"].flatten(1, 2), patches, atol=1e-6)
    assert dinov3_to_official(ours).keys() == sd.keys()


def test_bf16_rounded_periods_are_kept():
    """Released checkpoints hold periods rounded to bf16; DINOv3 uses them as stored, so vitlab does too."""
    sd = hf_to_official_state_dict(hf_model(layers=1, registers=4))
    sd["rope_embed.periods"] = sd["rope_embed.periods"].bfloat16().float()
    ours = dinov3_from_official(sd, num_heads=3)
    assert torch.equal(ours.blocks[0].mixer.rope.periods, sd["rope_embed.periods"])
    sd["rope_embed.periods"] = sd["rope_embed.periods"] * 2
    with pytest.raises(StateDictMismatchError, match="periods"):
        dinov3_from_official(sd, num_heads=3)


def test_local_cls_norm_is_dropped():
    sd = hf_to_official_state_dict(hf_model(layers=1, registers=4))
    sd["local_cls_norm.weight"], sd["local_cls_norm.bias"] = torch.ones(192), torch.zeros(192)
    assert dinov3_from_official(sd).cls_norm is None


def test_errors_name_every_bad_key():
    sd = hf_to_official_state_dict(hf_model(layers=2, registers=4))
    sd["blocks.0.attn.extra"] = torch.zeros(3)
    del sd["blocks.1.ls2.gamma"]
    sd["blocks.1.norm2.bias"] = torch.zeros(7)
    with pytest.raises(StateDictMismatchError) as err:
        dinov3_from_official(sd, num_heads=3)
    msg = str(err.value)
    assert "blocks.0.attn.extra" in msg and "blocks.1.ls2.gamma" in msg
    assert "blocks.1.norm2.bias: checkpoint (7,) vs model (192,)" in msg


def test_wrong_arch_is_an_error():
    sd = hf_to_official_state_dict(hf_model(layers=2, registers=4))
    with pytest.raises(StateDictMismatchError, match=r"checkpoint \(192,\) vs model \(384,\)"):
        dinov3_from_official(sd, arch="vits16")


def test_bad_bias_mask():
    sd = hf_to_official_state_dict(hf_model(layers=1, registers=0))
    sd["blocks.0.attn.qkv.bias_mask"] = torch.ones(576)
    with pytest.raises(StateDictMismatchError, match="bias_mask"):
        dinov3_from_official(sd)


def test_to_official_rejects_what_dinov3_cannot_express():
    hybrid = L(Block)(mixer_layer=L(Hyena2D)(order=2, filter_hidden=16), ffn_layer=L(Mlp)(ratio=2.0), norm_layer=L(LayerNorm)(eps=1e-5),
                      layer_scale_init=1e-5)
    cfg = dinov3_model_config("vits16").copy()
    cfg.dim, cfg.num_blocks, cfg.block_layer.mixer_layer.num_heads = 64, 2, 2
    cfg.layer_pattern, cfg.layer_types, cfg.block_layer = "HR", {"H": hybrid, "R": cfg.block_layer}, None
    with pytest.raises(ValueError, match="block 0"):
        dinov3_to_official(instantiate(cfg))
    cfg = dinov3_model_config("vits16").copy()
    cfg.dim, cfg.num_blocks, cfg.block_layer.mixer_layer.num_heads, cfg.num_classes = 64, 1, 2, 10
    with pytest.raises(ValueError, match="head"):
        dinov3_to_official(instantiate(cfg))
