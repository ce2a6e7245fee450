"""facebookresearch/dinov3 state dicts <-> vitlab DINOv3 backbones.

The official names (``dinov3/models/vision_transformer.py``) are vitlab's but for four things:
``storage_tokens`` are vitlab's ``register_tokens``; ``blocks.N.attn`` / ``blocks.N.mlp`` are
``blocks.N.mixer`` / ``blocks.N.ffn``; SwiGLU's ``w1`` (gate) and ``w2`` (value) are stacked in
vitlab's ``w12``; and the single ``rope_embed.periods`` buffer lives in every vitlab block
(``blocks.N.mixer.rope.periods``). ``qkv.bias_mask`` (the key-bias mask) is checked and rebuilt
from ``mask_k_bias``; ``local_cls_norm`` (the 7B / SAT ViT-L norm for local crops in training,
never used at inference) is dropped.

Axis legend: D width, R registers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import torch

from vitlab.config import instantiate
from vitlab.convert.dinov3_arch import (
    DINOV3_FFN_ACT,
    DINOv3Arch,
    arch_of_model,
    dinov3_arch,
    dinov3_model_config,
    ffn_width_fields,
    matching_arch,
)
from vitlab.convert.state_dict import StateDict, StateDictMismatchError, as_state_dict, check_state_dict
from vitlab.models import HybridViT
from vitlab.weights import load_model_state

__all__ = ["dinov3_from_official", "dinov3_to_official", "official_arch", "official_to_vitlab", "vitlab_to_official"]

# official -> vitlab renames; every other official key keeps its name in vitlab.
_RENAMES = (
    (re.compile(r"^storage_tokens$"), "register_tokens"),
    (re.compile(r"^blocks\.(\d+)\.attn\."), r"blocks.\1.mixer."),
    (re.compile(r"^blocks\.(\d+)\.mlp\."), r"blocks.\1.ffn."),
)
_TRAINING_ONLY = re.compile(r"^local_cls_norm\.")
_BLOCK = re.compile(r"^blocks\.(\d+)\.")


def _rename(key: str) -> str:
    for pattern, repl in _RENAMES:
        key = pattern.sub(repl, key)
    return key


def _unrename(key: str) -> str:
    key = re.sub(r"^register_tokens$", "storage_tokens", key)
    key = re.sub(r"^blocks\.(\d+)\.mixer\.", r"blocks.\1.attn.", key)
    return re.sub(r"^blocks\.(\d+)\.ffn\.", r"blocks.\1.mlp.", key)


def k_bias_mask(dim: int, dtype=torch.float32) -> torch.Tensor:
    """DINOv3's ``qkv.bias_mask``: ones, zeros over the key third. [3D]"""
    mask = torch.ones(3 * dim, dtype=dtype)
    mask[dim : 2 * dim] = 0
    return mask


def rope_periods(arch: DINOv3Arch) -> torch.Tensor:
    """The periods DINOv3 computes from ``base`` (float32). [head_dim / 4]"""
    q = arch.head_dim // 4
    return arch.rope_base ** (2 * torch.arange(q, dtype=torch.float32) / (arch.head_dim // 2))


def vitlab_to_official(state_dict: Mapping[str, torch.Tensor], arch: DINOv3Arch) -> StateDict:
    """A vitlab DINOv3 state dict in facebookresearch/dinov3 names (loads with ``strict=True`` there)."""
    out: StateDict = {}
    for key, value in state_dict.items():
        if key.endswith(".mixer.rope.periods"):
            if key == "blocks.0.mixer.rope.periods":
                out["rope_embed.periods"] = value
            continue
        if key.endswith((".ffn.w12.weight", ".ffn.w12.bias")):
            prefix, kind = key.rsplit(".w12.", 1)
            w1, w2 = value.chunk(2, dim=0)
            out[_unrename(f"{prefix}.w1.{kind}")] = w1
            out[_unrename(f"{prefix}.w2.{kind}")] = w2
            continue
        if key.startswith(("head.", "readout.")):
            raise ValueError(f"{key} has no place in a DINOv3 backbone (build the model with num_classes=0)")
        out[_unrename(key)] = value
        if key.endswith(".mixer.qkv.bias") and arch.mask_k_bias:
            out[_unrename(key) + "_mask"] = k_bias_mask(arch.embed_dim, value.dtype).to(value.device)
    if "mask_token" not in out:  # vitlab model built without one: DINOv3 initialises it to zeros
        ref = out["cls_token"]
        out["mask_token"] = ref.new_zeros(1, arch.embed_dim)
    return out


def official_to_vitlab(state_dict: Mapping[str, torch.Tensor], arch: DINOv3Arch) -> StateDict:
    """An official DINOv3 state dict (already checked against ``arch``) in vitlab names."""
    out: StateDict = {}
    periods = None
    for key, value in state_dict.items():
        if _TRAINING_ONLY.match(key) or key.endswith(".qkv.bias_mask"):
            continue
        if key == "rope_embed.periods":
            periods = value
            continue
        new = _rename(key)
        if new.endswith((".ffn.w1.weight", ".ffn.w1.bias")):
            prefix, kind = new.rsplit(".w1.", 1)
            out[f"{prefix}.w12.{kind}"] = torch.cat((value, state_dict[_unrename(f"{prefix}.w2.{kind}")]), dim=0)
            continue
        if new.endswith((".ffn.w2.weight", ".ffn.w2.bias")):
            continue  # stacked with w1
        out[new] = value
    if periods is not None:
        for i in range(arch.depth):
            out[f"blocks.{i}.mixer.rope.periods"] = periods.float().clone()
    return out


def official_arch(state_dict: Mapping[str, torch.Tensor], *, num_heads: int | None = None,
                  layer_norm_eps: float = 1e-5) -> DINOv3Arch:
    """The architecture of an official DINOv3 state dict, from its shapes.

    The head count comes from ``rope_embed.periods`` (head_dim / 4 entries) unless given. LayerNorm's
    eps is not in a state dict: 1e-5 is what every released model uses.
    """
    if "cls_token" not in state_dict or "patch_embed.proj.weight" not in state_dict:
        raise StateDictMismatchError(
            "not an official DINOv3 state dict: no 'cls_token' / 'patch_embed.proj.weight'; keys start with "
            + ", ".join(list(state_dict)[:8])
        )
    D = state_dict["cls_token"].shape[-1]
    patch = state_dict["patch_embed.proj.weight"]
    depth = 1 + max((int(m.group(1)) for k in state_dict if (m := _BLOCK.match(k))), default=-1)
    if depth == 0:
        raise StateDictMismatchError("official DINOv3 state dict has no 'blocks.N.*' keys")
    if "blocks.0.mlp.w1.weight" in state_dict:
        ffn_layer, hidden = "swiglu", state_dict["blocks.0.mlp.w1.weight"].shape[0]
        ffn_bias = "blocks.0.mlp.w1.bias" in state_dict
    elif "blocks.0.mlp.fc1.weight" in state_dict:
        ffn_layer, hidden = "mlp", state_dict["blocks.0.mlp.fc1.weight"].shape[0]
        ffn_bias = "blocks.0.mlp.fc1.bias" in state_dict
    else:
        raise StateDictMismatchError("official DINOv3 state dict has neither blocks.0.mlp.fc1 (MLP) nor blocks.0.mlp.w1 (SwiGLU)")
    if num_heads is None:
        if "rope_embed.periods" in state_dict:
            num_heads = D // (4 * state_dict["rope_embed.periods"].numel())
        elif (known := matching_arch(D, depth, ffn_layer, hidden)) is not None:
            num_heads = known.num_heads
        else:
            raise ValueError("cannot tell the head count (no rope_embed.periods); pass num_heads= or arch=")
    qkv_bias = "blocks.0.attn.qkv.bias" in state_dict
    storage = state_dict.get("storage_tokens")
    return DINOv3Arch(
        embed_dim=D, depth=depth, num_heads=num_heads, ffn_layer=ffn_layer,
        **ffn_width_fields(ffn_layer, D, hidden),
        num_registers=storage.shape[1] if storage is not None else 0,
        patch_size=patch.shape[-1], in_channels=patch.shape[1],
        qkv_bias=qkv_bias, proj_bias="blocks.0.attn.proj.bias" in state_dict, ffn_bias=ffn_bias,
        mask_k_bias=qkv_bias and "blocks.0.attn.qkv.bias_mask" in state_dict,
        layer_norm_eps=layer_norm_eps, untie_cls_norm="cls_norm.weight" in state_dict,
    )


def _check_values(state_dict: Mapping[str, torch.Tensor], arch: DINOv3Arch) -> None:
    """Buffers the architecture fixes: the key-bias mask, and RoPE periods (which may be bf16-rounded)."""
    bad = [k for k, v in state_dict.items()
           if k.endswith(".qkv.bias_mask") and not torch.equal(v.float().cpu(), k_bias_mask(arch.embed_dim))]
    if bad:
        raise StateDictMismatchError(f"qkv.bias_mask is not DINOv3's key-bias mask (ones, zeros over keys) in: {bad}")
    if "rope_embed.periods" in state_dict:
        given, want = state_dict["rope_embed.periods"].float().cpu(), rope_periods(arch)
        if not torch.allclose(given, want, rtol=1e-2, atol=0):  # released checkpoints hold bf16-rounded periods
            raise StateDictMismatchError(
                f"rope_embed.periods {given.tolist()} do not match RoPE base={arch.rope_base} "
                f"({want.tolist()}); the architecture's RoPE parameters differ"
            )


def dinov3_from_official(
    state_dict: Mapping[str, torch.Tensor] | str | Path,
    arch: str | DINOv3Arch | None = None,
    *,
    num_heads: int | None = None,
    return_config: bool = False,
):
    """A vitlab HybridViT (eval mode) running an official DINOv3 checkpoint exactly.

    Args:
        state_dict: the official state dict, or the path of a ``.pth`` holding one.
        arch: a released architecture (``"vits16"``, ``"vits16plus"``, ``"vitb16"``, ``"vitl16"``) or a
            :class:`DINOv3Arch`; None infers it from the shapes.
        num_heads: the head count, when inferring and the checkpoint has no ``rope_embed.periods``.
        return_config: also return the model's ``L(HybridViT)`` config.

    Raises:
        StateDictMismatchError: listing every missing, unexpected or mis-shaped key (official names).
    """
    sd = as_state_dict(state_dict)
    sd = {k: v for k, v in sd.items() if not _TRAINING_ONLY.match(k)}
    a = dinov3_arch(arch) if arch is not None else official_arch(sd, num_heads=num_heads)
    cfg = dinov3_model_config(a)
    expected = vitlab_to_official(instantiate(cfg, device="meta").state_dict(), a)  # shapes only, no memory
    if "rope_embed.periods" not in sd:  # a derived buffer, not a weight: DINOv3's init computes it from base
        expected.pop("rope_embed.periods")
    check_state_dict(sd, expected, "official DINOv3")
    _check_values(sd, a)
    model: HybridViT = instantiate(cfg)
    converted = official_to_vitlab(sd, a)
    for key, value in model.state_dict().items():
        converted.setdefault(key, value)  # only the RoPE periods, when the checkpoint lacks them
    load_model_state(model, converted, "converted vitlab")
    model.eval()
    return (model, cfg) if return_config else model


def dinov3_to_official(model: HybridViT) -> StateDict:
    """The official DINOv3 state dict of a vitlab DINOv3-architecture backbone.

    It loads with ``strict=True`` into facebookresearch/dinov3's ``DinoVisionTransformer`` built with
    the same arguments (``hub/backbones.py``). Raises ``ValueError`` for a model DINOv3 cannot express
    (hybrid blocks, learned position embedding, a classification head, ...).
    """
    arch = arch_of_model(model)
    if arch.ffn_act is not None:
        raise ValueError(f"the model's FFN activation is {arch.ffn_act!r}; DINOv3's {arch.ffn_layer} FFN "
                         f"has {DINOV3_FFN_ACT[arch.ffn_layer]!r} built in, so its checkpoints cannot hold another")
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    periods = [v for k, v in sd.items() if k.endswith(".mixer.rope.periods")]
    if any(not torch.equal(p, periods[0]) for p in periods):
        raise ValueError("blocks hold different RoPE periods; DINOv3 shares one rope_embed.periods")
    if model.num_classes > 0:
        raise ValueError(f"the model has a {model.num_classes}-class head; DINOv3 backbones have none "
                         "(take the backbone's state dict without head.*, or build with num_classes=0)")
    return vitlab_to_official(sd, arch)
