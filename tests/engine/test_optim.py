import pytest
import torch

from vitlab.config import L, instantiate
from vitlab.engine import build_optimizer, param_groups, set_hyperparams
from vitlab.layers import LayerNorm
from vitlab.mixers import Attention
from vitlab.layers import Mlp
from vitlab.models import Block, HybridViT


def tiny_vit(**kw):
    block = L(Block)(mixer_layer=L(Attention)(num_heads=2), ffn_layer=L(Mlp)(ratio=2.0), norm_layer=L(LayerNorm)(),
                     layer_scale_init=1e-5)
    return instantiate(L(HybridViT)(in_channels=1, num_classes=10, dim=32, num_blocks=2, patch_size=4,
                                    image_size=16, num_registers=2, norm_layer=L(LayerNorm)(), block_layer=block, **kw))


def by_name(groups):
    return {n: g for g in groups for n in g["names"]}


def test_no_decay_on_bias_norm_tokens_pos_embed_layerscale():
    groups = by_name(param_groups({"model": tiny_vit()}))
    for name in ("model.cls_token", "model.register_tokens", "model.pos_embed.pos_embed", "model.blocks.0.ls1.gamma",
                 "model.blocks.0.norm1.weight", "model.head.bias", "model.norm.weight"):
        assert groups[name]["wd_scale"] == 0.0, name
    for name in ("model.blocks.0.mlp.fc1.weight" if "model.blocks.0.mlp.fc1.weight" in groups else
                 "model.head.weight", "model.patch_embed.proj.weight"):
        assert groups[name]["wd_scale"] == 1.0, name


def test_layer_decay_and_patch_embed_multiplier():
    groups = by_name(param_groups({"model": tiny_vit()}, layer_decay=0.5, patch_embed_lr_mult=0.2))
    assert groups["model.head.weight"]["lr_scale"] == 1.0  # layer_id = num_blocks + 1
    assert groups["model.blocks.1.norm1.weight"]["lr_scale"] == 0.5
    assert groups["model.blocks.0.norm1.weight"]["lr_scale"] == 0.25
    assert groups["model.cls_token"]["lr_scale"] == 0.125
    assert abs(groups["model.patch_embed.proj.weight"]["lr_scale"] - 0.125 * 0.2) < 1e-12


def test_build_optimizer_and_set_hyperparams():
    model = tiny_vit()
    opt = build_optimizer(L(torch.optim.AdamW)(betas=[0.9, 0.95]), param_groups({"model": model}, layer_decay=0.5))
    set_hyperparams(opt, lr=1e-3, weight_decay=0.05)
    for g in opt.param_groups:
        assert g["lr"] == 1e-3 * g["lr_scale"] and g["weight_decay"] == 0.05 * g["wd_scale"]
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))


def test_dinov3_weight_decay_rule_lists_the_decayed_names():
    """DINOv3 (train/param_groups.py) exempts only names ending in bias or holding norm / gamma."""
    from tests.models.helpers import tiny

    from vitlab.ssl import DINOHead

    cfg = tiny("HR", num_classes=0, mask_token=True, num_registers=2, image_size=16)
    cfg.layer_types.H.layer_scale_init = 1e-5
    model = instantiate(cfg)
    head = DINOHead(32, 16, hidden_features=8, bottleneck_dim=4, weight_norm=True)
    groups = param_groups({"backbone": model, "dino_head": head}, no_weight_decay="dinov3")
    decayed = sorted(n for g in groups if g["wd_scale"] == 1.0 for n in g["names"])
    assert decayed == sorted([
        "backbone.cls_token", "backbone.register_tokens", "backbone.mask_token",  # tokens decay in DINOv3
        "backbone.patch_embed.proj.weight", "backbone.pos_embed.pos_embed",
        "backbone.blocks.0.mixer.in_proj.weight", "backbone.blocks.0.mixer.short_conv.weight",
        "backbone.blocks.0.mixer.filter.mlp.0.weight", "backbone.blocks.0.mixer.filter.mlp.2.weight",
        "backbone.blocks.0.mixer.filter.mlp.4.weight", "backbone.blocks.0.mixer.out_proj.weight",
        "backbone.blocks.0.ffn.fc1.weight", "backbone.blocks.0.ffn.fc2.weight",
        "backbone.blocks.1.mixer.qkv.weight", "backbone.blocks.1.mixer.proj.weight",
        "backbone.blocks.1.ffn.fc1.weight", "backbone.blocks.1.ffn.fc2.weight",
        "dino_head.mlp.0.weight", "dino_head.mlp.2.weight", "dino_head.mlp.4.weight",
        "dino_head.last_layer.parametrizations.weight.original1",
    ])
    exempt = {n for g in groups if g["wd_scale"] == 0.0 for n in g["names"]}
    assert {"backbone.blocks.0.ls1.gamma", "backbone.blocks.0.norm1.weight", "backbone.norm.bias",
            "backbone.blocks.0.mixer.skip", "backbone.blocks.0.mixer.filter.mlp.1.freq"} <= exempt
    timm = by_name(param_groups({"backbone": model}))  # the default rule exempts the tokens
    assert timm["backbone.cls_token"]["wd_scale"] == 0.0 and timm["backbone.mask_token"]["wd_scale"] == 0.0
    with pytest.raises(ValueError, match="optim.no_weight_decay must be one of .* got 'dino'"):
        param_groups({"backbone": model}, no_weight_decay="dino")


def test_lr_scaling_rules():
    from vitlab.engine.optim import lr_scale_factor

    assert lr_scale_factor(None, 4096) == 1.0
    assert lr_scale_factor("sqrt_wrt_1024", 64) == 1.0  # DINOv3's rule: 4 sqrt(B / 1024)
    assert lr_scale_factor("sqrt_wrt_1024", 2048) == pytest.approx(4 * 2**0.5)
    assert lr_scale_factor("linear_wrt_256", 512) == 2.0
    with pytest.raises(ValueError, match="optim.lr_scaling must be one of .* got 'sqrt'"):
        lr_scale_factor("sqrt", 64)
