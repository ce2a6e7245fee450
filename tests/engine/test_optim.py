import torch

from vitlab.config import L, instantiate
from vitlab.engine import build_optimizer, param_groups, set_hyperparams
from vitlab.layers import LayerNorm
from vitlab.mixers import Attention
from vitlab.layers import Mlp
from vitlab.models import Block, HybridViT


def tiny_vit(**kw):
    block = L(Block)(mixer=L(Attention)(num_heads=2), ffn=L(Mlp)(ratio=2.0), norm=L(LayerNorm)(),
                     layer_scale_init=1e-5)
    return instantiate(L(HybridViT)(in_channels=1, num_classes=10, hidden_dim=32, num_blocks=2, patch_size=4,
                                    image_size=16, num_registers=2, norm_cfg=L(LayerNorm)(), block_cfg=block, **kw))


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
