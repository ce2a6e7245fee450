"""Reference models with random weights, and the official-format state dict of an HF model.

Random initialisations leave LayerScale at 1e-5 and biases at zero, where a wrong mapping of a
gamma, a bias or a norm would go unnoticed; ``randomize_`` makes every tensor matter.
"""

from __future__ import annotations

import math

import torch
from torch import nn


@torch.no_grad()
def randomize_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Every parameter to a random value of a scale that keeps activations O(1)."""
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        r = torch.randn(p.shape, generator=g)
        if p.ndim >= 2 and "token" not in name:
            fan_in = math.prod(p.shape[1:])
            p.copy_(r / math.sqrt(fan_in))
        elif name.endswith(("gamma", "lambda1", "gamma_1", "gamma_2")):
            p.copy_(0.5 + 0.25 * r)  # LayerScale
        elif "norm" in name and name.endswith("weight"):
            p.copy_(1.0 + 0.2 * r)
        else:
            p.copy_(0.2 * r)  # biases, CLS/register/mask tokens
    return model


def hf_model(*, hidden=192, layers=2, heads=3, registers=4, gated=False, intermediate=None, key_bias=False,
             query_bias=True, hidden_act=None, seed=0):
    """A random DINOv3ViTModel; ``hidden_act`` defaults to DINOv3's own (``silu`` gated, else ``gelu``)."""
    from transformers import DINOv3ViTConfig, DINOv3ViTModel

    config = DINOv3ViTConfig(
        hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        intermediate_size=intermediate or (4 * hidden if not gated else 2 * hidden),
        num_register_tokens=registers, use_gated_mlp=gated,
        hidden_act=hidden_act or ("silu" if gated else "gelu"),
        key_bias=key_bias, query_bias=query_bias, layer_norm_eps=1e-5,
    )
    torch.manual_seed(seed)
    return randomize_(DINOv3ViTModel(config), seed).eval()


def split_dinov3_tokens(tokens: torch.Tensor, registers: int) -> dict[str, torch.Tensor]:
    """DINOv3's ``[CLS, storage, patches]`` sequence [B, 1 + R + N, D] by kind."""
    return {"cls": tokens[:, 0], "registers": tokens[:, 1 : 1 + registers], "patches": tokens[:, 1 + registers :]}


def max_diffs(ours: dict[str, torch.Tensor], ref: dict[str, torch.Tensor]) -> dict[str, float]:
    """Max abs difference per token kind; vitlab's patches [B, h, w, D] are compared row-major."""
    out = {}
    for kind in ("cls", "registers", "patches"):
        a = ours[kind].flatten(1, 2) if kind == "patches" else ours[kind]
        assert a.shape == ref[kind].shape, (kind, a.shape, ref[kind].shape)
        out[kind] = (a - ref[kind]).abs().max().item() if a.numel() else 0.0
    return out


def hf_to_official_state_dict(hf) -> dict[str, torch.Tensor]:
    """An official facebookresearch/dinov3 state dict from an HF DINOv3ViTModel.

    The inverse of ``ORIGINAL_TO_CONVERTED_KEY_MAPPING`` and ``split_qkv`` in transformers'
    ``convert_dinov3_vit_to_hf.py`` (with today's HF names): q/k/v are concatenated into ``qkv``
    (the key bias, absent in HF, is zero and masked by ``bias_mask``), ``layer_scaleN.lambda1`` is
    ``lsN.gamma``, and the RoPE periods are ``1 / inv_freq``.
    """
    c = hf.config
    D = c.hidden_size
    sd = {k.replace("model.layer.", "layer."): v for k, v in hf.state_dict().items()}
    out = {
        "cls_token": sd["embeddings.cls_token"],
        "mask_token": sd["embeddings.mask_token"].reshape(1, D),
        "patch_embed.proj.weight": sd["embeddings.patch_embeddings.weight"],
        "patch_embed.proj.bias": sd["embeddings.patch_embeddings.bias"],
        "rope_embed.periods": 1.0 / hf.rope_embeddings.inv_freq,
        "norm.weight": sd["norm.weight"],
        "norm.bias": sd["norm.bias"],
    }
    if c.num_register_tokens:
        out["storage_tokens"] = sd["embeddings.register_tokens"]
    for i in range(c.num_hidden_layers):
        h, o = f"layer.{i}.", f"blocks.{i}."
        for n in ("norm1", "norm2"):
            out[f"{o}{n}.weight"], out[f"{o}{n}.bias"] = sd[f"{h}{n}.weight"], sd[f"{h}{n}.bias"]
        out[o + "attn.qkv.weight"] = torch.cat([sd[f"{h}attention.{n}_proj.weight"] for n in "qkv"])
        out[o + "attn.qkv.bias"] = torch.cat([sd.get(f"{h}attention.{n}_proj.bias", torch.zeros(D)) for n in "qkv"])
        out[o + "attn.qkv.bias_mask"] = torch.cat((torch.ones(D), torch.zeros(D), torch.ones(D)))
        out[o + "attn.proj.weight"], out[o + "attn.proj.bias"] = sd[h + "attention.o_proj.weight"], sd[h + "attention.o_proj.bias"]
        out[o + "ls1.gamma"], out[o + "ls2.gamma"] = sd[h + "layer_scale1.lambda1"], sd[h + "layer_scale2.lambda1"]
        names = {"gate_proj": "w1", "up_proj": "w2", "down_proj": "w3"} if c.use_gated_mlp else \
            {"up_proj": "fc1", "down_proj": "fc2"}
        for hn, on in names.items():
            out[f"{o}mlp.{on}.weight"], out[f"{o}mlp.{on}.bias"] = sd[f"{h}mlp.{hn}.weight"], sd[f"{h}mlp.{hn}.bias"]
    return {k: v.detach().clone() for k, v in out.items()}
