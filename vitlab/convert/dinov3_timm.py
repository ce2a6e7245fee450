"""timm ``Eva`` DINOv3 weights (``vit_*_patch16_dinov3[_qkvb]``, timm/models/eva.py) -> vitlab.

timm renames ``storage_tokens`` to ``reg_token`` and LayerScale to ``gamma_1``/``gamma_2``, keeps
the fused ``qkv`` weight but holds its bias as ``q_bias`` and ``v_bias`` (the key bias is a zero
buffer), splits the SwiGLU input projection into ``fc1_g`` (gate) and ``fc1_x``, and stores neither
the RoPE periods (recomputed from ``rope_temperature``) nor the mask token. The mask token is only
used in masked-image pretraining; a converted model gets DINOv3's initial value, zeros.

Axis legend: D width.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from vitlab.config import instantiate
from vitlab.convert.dinov3_arch import (
    FFN_ACTIVATIONS,
    DINOv3Arch,
    dinov3_arch,
    dinov3_model_config,
    ffn_act_name,
    ffn_width_fields,
    matching_arch,
)
from vitlab.convert.state_dict import StateDict, StateDictMismatchError, as_state_dict, check_state_dict
from vitlab.weights import load_model_state

__all__ = ["dinov3_from_timm", "timm_arch", "timm_to_vitlab", "vitlab_to_timm"]

_RENAMES = (  # vitlab -> timm; the rest keeps its name
    (r"^register_tokens$", "reg_token"),
    (r"^blocks\.(\d+)\.ls1\.gamma$", r"blocks.\1.gamma_1"),
    (r"^blocks\.(\d+)\.ls2\.gamma$", r"blocks.\1.gamma_2"),
    (r"^blocks\.(\d+)\.mixer\.", r"blocks.\1.attn."),
    (r"^blocks\.(\d+)\.ffn\.w3\.", r"blocks.\1.mlp.fc2."),
    (r"^blocks\.(\d+)\.ffn\.w12\.", r"blocks.\1.mlp.fc1_g."),  # gate half; the value half is fc1_x
    (r"^blocks\.(\d+)\.ffn\.", r"blocks.\1.mlp."),
)
_BLOCK = re.compile(r"^blocks\.(\d+)\.")


def _to_timm(key: str) -> str:
    for pattern, repl in _RENAMES:
        key = re.sub(pattern, repl, key)
    return key


def vitlab_to_timm(state_dict: Mapping[str, torch.Tensor], arch: DINOv3Arch) -> StateDict:
    """A vitlab DINOv3 state dict in timm Eva names (no mask token, no RoPE periods)."""
    D = arch.embed_dim
    out: StateDict = {}
    for key, value in state_dict.items():
        if key == "mask_token" or key.endswith(".rope.periods"):
            continue
        if key.endswith(".mixer.qkv.bias"):
            prefix = _to_timm(key).removesuffix("qkv.bias")
            q, _, v = value.split(D)
            out[prefix + "q_bias"], out[prefix + "v_bias"] = q, v
        elif ".ffn.w12." in key:
            gate, x = value.chunk(2, dim=0)
            kind = key.rsplit(".", 1)[1]
            prefix = _to_timm(key).removesuffix(f"fc1_g.{kind}")
            out[f"{prefix}fc1_g.{kind}"], out[f"{prefix}fc1_x.{kind}"] = gate, x
        else:
            out[_to_timm(key)] = value
    return out


def timm_to_vitlab(state_dict: Mapping[str, torch.Tensor], arch: DINOv3Arch) -> StateDict:
    """A timm Eva DINOv3 state dict (checked against ``arch``) in vitlab names, without the mask token."""
    inverse = {_to_timm(k): k for k in _vitlab_keys(arch)}
    out: StateDict = {}
    for key, value in state_dict.items():
        if key.endswith(".attn.q_bias"):
            prefix = inverse[key.replace(".attn.q_bias", ".attn.qkv.weight")].removesuffix("weight")
            v = state_dict[key.replace("q_bias", "v_bias")]
            out[prefix + "bias"] = torch.cat((value, torch.zeros_like(value), v))  # timm's key bias is zero
        elif key.endswith((".mlp.fc1_g.weight", ".mlp.fc1_g.bias")):
            kind = key.rsplit(".", 1)[1]
            prefix = key.removesuffix(f"fc1_g.{kind}")
            out[inverse[f"{prefix}fc1_g.{kind}"]] = torch.cat((value, state_dict[f"{prefix}fc1_x.{kind}"]))
        elif key.endswith((".attn.v_bias", ".mlp.fc1_x.weight", ".mlp.fc1_x.bias")):
            continue  # merged above
        else:
            out[inverse[key]] = value
    return out


def _vitlab_keys(arch: DINOv3Arch) -> list[str]:
    """vitlab names of the tensors timm stores (its ``q_bias``/``v_bias`` and ``fc1_x`` are merged in)."""
    keys = ["cls_token", "patch_embed.proj.weight", "patch_embed.proj.bias", "norm.weight", "norm.bias"]
    if arch.num_registers:
        keys.append("register_tokens")
    ffn = ["ffn.w12.weight", "ffn.w12.bias", "ffn.w3.weight", "ffn.w3.bias"] if arch.ffn_layer == "swiglu" \
        else ["ffn.fc1.weight", "ffn.fc1.bias", "ffn.fc2.weight", "ffn.fc2.bias"]
    per_block = ["norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias", "ls1.gamma", "ls2.gamma",
                 "mixer.qkv.weight", "mixer.proj.weight", "mixer.proj.bias", *ffn]
    return keys + [f"blocks.{i}.{k}" for i in range(arch.depth) for k in per_block]


def timm_arch(state_dict: Mapping[str, torch.Tensor], *, num_heads: int | None = None,
              layer_norm_eps: float = 1e-5, rope_base: float = 100.0, ffn_act: str | None = None) -> DINOv3Arch:
    """The architecture of a timm Eva DINOv3 state dict, from its shapes.

    A state dict does not hold the head count: it is taken from ``num_heads`` or from the released
    architecture with the same shapes. Nor does it hold the FFN activation (``ffn_act``, see
    :class:`DINOv3Arch`): DINOv3's own unless given.
    """
    if "cls_token" not in state_dict or "blocks.0.attn.qkv.weight" not in state_dict:
        raise StateDictMismatchError(
            "not a timm Eva DINOv3 state dict: no 'cls_token' / 'blocks.0.attn.qkv.weight' (only the fused-qkv "
            "variant converts); keys start with " + ", ".join(list(state_dict)[:8])
        )
    D = state_dict["cls_token"].shape[-1]
    depth = 1 + max(int(m.group(1)) for k in state_dict if (m := _BLOCK.match(k)))
    if "blocks.0.mlp.fc1_g.weight" in state_dict:
        ffn_layer, hidden = "swiglu", state_dict["blocks.0.mlp.fc1_g.weight"].shape[0]
    else:
        ffn_layer, hidden = "mlp", state_dict["blocks.0.mlp.fc1.weight"].shape[0]
    if num_heads is None:
        known = matching_arch(D, depth, ffn_layer, hidden)
        if known is None:
            raise ValueError(f"cannot tell the head count of a timm state dict (D={D}, depth={depth}); "
                             "pass num_heads=, arch=, or the timm model itself")
        num_heads = known.num_heads
    patch = state_dict["patch_embed.proj.weight"]
    qkv_bias = "blocks.0.attn.q_bias" in state_dict
    reg = state_dict.get("reg_token")
    return DINOv3Arch(
        embed_dim=D, depth=depth, num_heads=num_heads, ffn_layer=ffn_layer, **ffn_width_fields(ffn_layer, D, hidden),
        num_registers=reg.shape[1] if reg is not None else 0, patch_size=patch.shape[-1], in_channels=patch.shape[1],
        qkv_bias=qkv_bias, mask_k_bias=qkv_bias, layer_norm_eps=layer_norm_eps, rope_base=rope_base,
        ffn_act=ffn_act,
    )


def _model_hints(model: nn.Module) -> dict:
    """What a timm model knows beyond its state dict: heads, LayerNorm eps, RoPE temperature, FFN activation."""
    hints = {}
    block = model.blocks[0]
    hints["num_heads"] = block.attn.num_heads
    hints["layer_norm_eps"] = float(block.norm1.eps)
    act = getattr(block.mlp, "act", None)
    if act is not None:
        hints["ffn_act"] = ffn_act_name(act)
        if hints["ffn_act"] is None:
            raise ValueError(f"timm model's FFN activation {act!r} (blocks.0.mlp.act) is none of "
                             f"{', '.join(FFN_ACTIVATIONS)}")
    rope = getattr(model, "rope", None)
    if getattr(rope, "temperature", None) is not None:
        hints["rope_base"] = float(rope.temperature)
    if getattr(rope, "normalize_coords", "separate") != "separate":
        raise ValueError(f"timm model uses normalize_coords={rope.normalize_coords!r}; DINOv3 uses 'separate'")
    return hints


def dinov3_from_timm(
    model_or_state_dict: Any,
    arch: str | DINOv3Arch | None = None,
    *,
    num_heads: int | None = None,
    layer_norm_eps: float = 1e-5,
    return_config: bool = False,
):
    """A vitlab HybridViT (eval mode) running a timm ``vit_*_patch16_dinov3`` model exactly.

    Args:
        model_or_state_dict: the timm model (``timm.create_model("vit_small_patch16_dinov3")``), its
            state dict, or the path of a file holding one.
        arch: a released architecture (``"vits16"``, ...) instead of inferring it from the shapes.
        num_heads: the head count, for a state dict whose shapes match no released architecture.
        layer_norm_eps: eps of a state dict's LayerNorms (timm's DINOv3 models use 1e-5).
        return_config: also return the model's ``L(HybridViT)`` config.

    Raises:
        StateDictMismatchError: listing every missing, unexpected or mis-shaped key (timm names).
    """
    hints = {"num_heads": num_heads, "layer_norm_eps": layer_norm_eps}
    if isinstance(model_or_state_dict, nn.Module):
        hints.update(_model_hints(model_or_state_dict))
    sd = as_state_dict(model_or_state_dict)
    a = dinov3_arch(arch) if arch is not None else timm_arch(sd, **hints)
    cfg = dinov3_model_config(a)
    check_state_dict(sd, vitlab_to_timm(instantiate(cfg, device="meta").state_dict(), a), "timm Eva DINOv3")
    model = instantiate(cfg)
    own = model.state_dict()
    converted = timm_to_vitlab(sd, a)
    for key, value in own.items():
        if key == "mask_token":
            converted[key] = torch.zeros_like(value)  # not in timm; DINOv3's init value
        elif key.endswith(".mixer.rope.periods"):
            converted[key] = value  # not in timm; computed from the base, as timm does
    load_model_state(model, converted, "converted vitlab")
    model.eval()
    return (model, cfg) if return_config else model
