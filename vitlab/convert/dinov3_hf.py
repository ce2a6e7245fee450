"""Hugging Face transformers ``DINOv3ViTModel`` weights -> vitlab DINOv3 backbones.

HF splits DINOv3's fused ``qkv`` into ``q_proj``/``k_proj``/``v_proj`` (the key bias, always masked
to zero in DINOv3, is absent: ``key_bias=False``), renames the FFN (``up_proj``/``down_proj``, and
``gate_proj`` for the gated FFN) and LayerScale (``layer_scale1.lambda1``), and keeps the mask token
as [1, 1, D]. The RoPE periods are not stored (HF recomputes them from ``rope_theta``), nor is any
untied CLS norm (HF has one final norm). Checkpoints on the Hub name blocks ``layer.N``; transformers
5 names them ``model.layer.N``; both load.

The FFN activation is a config choice in HF (``hidden_act``, default ``gelu``: with
``use_gated_mlp=True`` that is a GeGLU, not DINOv3's SwiGLU); it becomes the FFN's ``act_layer``.

Axis legend: D width, R registers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vitlab.config import instantiate
from vitlab.convert.dinov3_arch import DINOv3Arch, dinov3_arch, dinov3_model_config, ffn_width_fields
from vitlab.convert.dinov3_official import rope_periods
from vitlab.convert.state_dict import (
    StateDict,
    StateDictMismatchError,
    as_state_dict,
    check_state_dict,
    load_state_dict_file,
)
from vitlab.weights import load_model_state

__all__ = ["HF_ACTIVATIONS", "dinov3_from_hf", "hf_arch", "hf_to_vitlab", "vitlab_to_hf"]

_SIMPLE = {  # HF -> vitlab, per block (prefix "layer.N." -> "blocks.N.")
    "norm1.weight": "norm1.weight", "norm1.bias": "norm1.bias",
    "norm2.weight": "norm2.weight", "norm2.bias": "norm2.bias",
    "attention.o_proj.weight": "mixer.proj.weight", "attention.o_proj.bias": "mixer.proj.bias",
    "layer_scale1.lambda1": "ls1.gamma", "layer_scale2.lambda1": "ls2.gamma",
}
_MLP = {"mlp.up_proj": "ffn.fc1", "mlp.down_proj": "ffn.fc2"}
_GATED = {"mlp.down_proj": "ffn.w3"}  # gate_proj and up_proj stack into ffn.w12 (gate first)
# transformers' ACT2FN names -> vitlab's (vitlab.convert.dinov3_arch.FFN_ACTIVATIONS). Each pair is
# one function; the tanh-GELU spellings differ from torch's only in rounding (~1e-7).
HF_ACTIVATIONS = {
    "gelu": "gelu", "gelu_python": "gelu",
    "gelu_pytorch_tanh": "gelu_tanh", "gelu_python_tanh": "gelu_tanh", "gelu_new": "gelu_tanh",
    "gelu_fast": "gelu_tanh", "gelu_accurate": "gelu_tanh",
    "silu": "silu", "swish": "silu",
    "relu": "relu", "relu6": "relu6", "leaky_relu": "leaky_relu", "sigmoid": "sigmoid", "tanh": "tanh",
    "mish": "mish", "hardswish": "hardswish", "linear": "identity",
}
_TOP = {
    "embeddings.cls_token": "cls_token",
    "embeddings.register_tokens": "register_tokens",
    "embeddings.patch_embeddings.weight": "patch_embed.proj.weight",
    "embeddings.patch_embeddings.bias": "patch_embed.proj.bias",
    "norm.weight": "norm.weight", "norm.bias": "norm.bias",
}


def _get(config: Any, name: str, default: Any = None) -> Any:
    return config.get(name, default) if isinstance(config, Mapping) else getattr(config, name, default)


def hf_arch(config: Any) -> DINOv3Arch:
    """The architecture a ``DINOv3ViTConfig`` (or its ``config.json`` dict) describes."""
    if _get(config, "model_type", "dinov3_vit") != "dinov3_vit":
        raise ValueError(f"expected a dinov3_vit config, got model_type={_get(config, 'model_type')!r}")
    gated = bool(_get(config, "use_gated_mlp", False))
    act = _get(config, "hidden_act", "gelu")
    if not isinstance(act, str) or act not in HF_ACTIVATIONS:
        raise ValueError(f"DINOv3ViTConfig.hidden_act={act!r} has no vitlab equivalent; "
                         f"supported: {', '.join(HF_ACTIVATIONS)}")
    patch = _get(config, "patch_size", 16)
    image = _get(config, "image_size", 224)
    if isinstance(patch, (list, tuple)):
        if patch[0] != patch[1]:
            raise ValueError(f"vitlab needs square patches, got patch_size={patch}")
        patch = patch[0]
    D = _get(config, "hidden_size")
    ffn_layer = "swiglu" if gated else "mlp"
    q, k, v = (bool(_get(config, n, d)) for n, d in (("query_bias", True), ("key_bias", False), ("value_bias", True)))
    qkv_bias = q or k or v
    return DINOv3Arch(
        embed_dim=D, depth=_get(config, "num_hidden_layers"), num_heads=_get(config, "num_attention_heads"),
        ffn_layer=ffn_layer, ffn_act=HF_ACTIVATIONS[act],
        **ffn_width_fields(ffn_layer, D, _get(config, "intermediate_size")),
        num_registers=_get(config, "num_register_tokens", 0), patch_size=patch,
        in_channels=_get(config, "num_channels", 3), qkv_bias=qkv_bias, proj_bias=bool(_get(config, "proj_bias", True)),
        ffn_bias=bool(_get(config, "mlp_bias", True)), mask_k_bias=qkv_bias and not k,
        layer_norm_eps=float(_get(config, "layer_norm_eps", 1e-5)), rope_base=float(_get(config, "rope_theta", 100.0)),
        rope_shift_coords=_get(config, "pos_embed_shift"), rope_jitter_coords=_get(config, "pos_embed_jitter"),
        rope_rescale_coords=_get(config, "pos_embed_rescale", 2.0),
        image_size=tuple(image) if isinstance(image, (list, tuple)) else image,
    )


def _bias_flags(config: Any, arch: DINOv3Arch) -> tuple[bool, bool, bool]:
    if config is None:
        return arch.qkv_bias, arch.qkv_bias and not arch.mask_k_bias, arch.qkv_bias
    return tuple(bool(_get(config, n, d)) for n, d in (("query_bias", True), ("key_bias", False), ("value_bias", True)))


def _block_renames(arch: DINOv3Arch, i: int) -> list[tuple[str, str]]:
    """``(HF key, vitlab key)`` of block ``i``'s tensors that only change name (norms, output projection,
    LayerScale, the FFN's unstacked layers); the stacked SwiGLU and qkv weights are split or joined apart."""
    src, dst = f"layer.{i}.", f"blocks.{i}."
    pairs = [(src + hf, dst + ours) for hf, ours in _SIMPLE.items()]
    ffn_map = _GATED if arch.ffn_layer == "swiglu" else _MLP
    pairs += [(f"{src}{hf}.{kind}", f"{dst}{ours}.{kind}") for hf, ours in ffn_map.items() for kind in ("weight", "bias")]
    return pairs


def _block_stacks(arch: DINOv3Arch, i: int) -> list[tuple[str, tuple[str, ...]]]:
    """``(vitlab key, HF keys)`` of block ``i``'s tensors that vitlab stacks along dim 0 and HF keeps apart:
    SwiGLU's gate and up (gate first), and the qkv weight. The qkv bias, which HF may lack a part of, is
    joined and split apart."""
    src, dst = f"layer.{i}.", f"blocks.{i}."
    stacks = [(f"{dst}ffn.w12.{kind}", (f"{src}mlp.gate_proj.{kind}", f"{src}mlp.up_proj.{kind}"))
              for kind in ("weight", "bias")] if arch.ffn_layer == "swiglu" else []
    return stacks + [(f"{dst}mixer.qkv.weight", tuple(f"{src}attention.{n}_proj.weight" for n in "qkv"))]


def vitlab_to_hf(state_dict: Mapping[str, torch.Tensor], arch: DINOv3Arch,
                 biases: tuple[bool, bool, bool]) -> StateDict:
    """A vitlab DINOv3 state dict in HF names (``layer.N``); ``biases`` says which of q, k, v have one."""
    D = arch.embed_dim
    out: StateDict = {}
    for hf, ours in _TOP.items():
        if ours in state_dict:
            out[hf] = state_dict[ours]
    if "register_tokens" not in state_dict:
        out["embeddings.register_tokens"] = state_dict["cls_token"].new_zeros(1, 0, D)
    out["embeddings.mask_token"] = state_dict["mask_token"].reshape(1, 1, D)
    for i in range(arch.depth):
        src, dst = f"blocks.{i}.", f"layer.{i}."
        out.update((hf, state_dict[ours]) for hf, ours in _block_renames(arch, i) if ours in state_dict)
        for ours, parts in _block_stacks(arch, i):
            if ours in state_dict:
                out.update(zip(parts, state_dict[ours].chunk(len(parts), dim=0)))
        if f"{src}mixer.qkv.bias" in state_dict:
            for name, part, present in zip("qkv", state_dict[f"{src}mixer.qkv.bias"].split(D), biases):
                if present:
                    out[f"{dst}attention.{name}_proj.bias"] = part
    return out


def hf_to_vitlab(state_dict: Mapping[str, torch.Tensor], arch: DINOv3Arch) -> StateDict:
    """An HF state dict (in ``layer.N`` names, checked against ``arch``) in vitlab names."""
    D = arch.embed_dim
    sd = state_dict
    out: StateDict = {ours: sd[hf] for hf, ours in _TOP.items() if hf in sd}
    if arch.num_registers == 0:
        out.pop("register_tokens", None)
    out["mask_token"] = sd["embeddings.mask_token"].reshape(1, D)
    for i in range(arch.depth):
        src, dst = f"layer.{i}.", f"blocks.{i}."
        out.update((ours, sd[hf]) for hf, ours in _block_renames(arch, i) if hf in sd)
        for ours, parts in _block_stacks(arch, i):
            if parts[0] in sd:
                out[ours] = torch.cat([sd[p] for p in parts])
        if arch.qkv_bias:  # a projection without bias is one with a zero bias
            w = out[f"{dst}mixer.qkv.weight"]
            parts = [sd.get(f"{src}attention.{n}_proj.bias", w.new_zeros(D)) for n in "qkv"]
            out[f"{dst}mixer.qkv.bias"] = torch.cat(parts)
    return out


def _normalise_keys(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """transformers 5 nests the blocks under ``model.``; the Hub files do not."""
    return {re.sub(r"^model\.layer\.", "layer.", k): v for k, v in state_dict.items()}


def _read_dir(path: Path) -> tuple[StateDict, dict]:
    config_file = path / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"no config.json in {str(path)!r}")
    for name in ("model.safetensors", "pytorch_model.bin", "model.pt", "model.pth"):
        if (path / name).is_file():
            return load_state_dict_file(path / name), json.loads(config_file.read_text())
    index = path / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        sd: StateDict = {}
        for shard in shards:
            sd.update(load_state_dict_file(path / shard))
        return sd, json.loads(config_file.read_text())
    raise FileNotFoundError(f"no model.safetensors / pytorch_model.bin in {str(path)!r}")


def _resolve(source: Any, config: Any) -> tuple[StateDict, Any]:
    if isinstance(source, nn.Module):
        return dict(source.state_dict()), config if config is not None else getattr(source, "config", None)
    if isinstance(config, (str, Path)):
        config = json.loads(Path(config).expanduser().read_text())
    if isinstance(source, (str, Path)):
        path = Path(source).expanduser()
        if path.is_dir():
            sd, found = _read_dir(path)
            return sd, config if config is not None else found
        sd = load_state_dict_file(path)
        if config is None and (path.parent / "config.json").is_file():
            config = json.loads((path.parent / "config.json").read_text())
        return sd, config
    return as_state_dict(source), config


def dinov3_from_hf(
    model_or_state_dict: Any,
    config: Any = None,
    *,
    arch: str | DINOv3Arch | None = None,
    return_config: bool = False,
):
    """A vitlab HybridViT (eval mode) running a transformers ``DINOv3ViTModel`` exactly.

    Args:
        model_or_state_dict: a ``DINOv3ViTModel`` (or ``DINOv3ViTBackbone``), its state dict, a
            Hub-style directory (``config.json`` + ``model.safetensors``), or a weights file (its
            ``config.json`` is looked for next to it).
        config: a ``DINOv3ViTConfig``, its dict, or a ``config.json`` path; taken from the model or
            directory when not given.
        arch: a released architecture instead of (or checked against) the config.
        return_config: also return the model's ``L(HybridViT)`` config.

    Raises:
        StateDictMismatchError: listing every missing, unexpected or mis-shaped key (HF names).
    """
    sd, config = _resolve(model_or_state_dict, config)
    sd = _normalise_keys(sd)
    if arch is None and config is None:
        raise ValueError("an HF state dict needs its config (DINOv3ViTConfig, dict or config.json) or arch=")
    a = dinov3_arch(arch) if arch is not None else hf_arch(config)
    if arch is not None and config is not None:
        _check_agrees(a, hf_arch(config))
    inv_freq = sd.pop("rope_embeddings.inv_freq", None)  # a derived buffer some exports keep
    if inv_freq is not None and not torch.allclose(1.0 / inv_freq.float(), rope_periods(a), rtol=1e-2):
        raise StateDictMismatchError(f"rope_embeddings.inv_freq does not match RoPE base={a.rope_base}")
    cfg = dinov3_model_config(a)
    expected = vitlab_to_hf(instantiate(cfg, device="meta").state_dict(), a, _bias_flags(config, a))
    check_state_dict(sd, expected, "HF DINOv3ViTModel")
    model = instantiate(cfg)
    own = model.state_dict()
    converted = hf_to_vitlab(sd, a)
    for key, value in own.items():
        if key.endswith(".mixer.rope.periods"):  # not stored by HF: computed from rope_theta, as HF does
            converted[key] = value
    load_model_state(model, converted, "converted vitlab")
    model.eval()
    return (model, cfg) if return_config else model


_STRUCTURE = ("embed_dim", "depth", "num_heads", "ffn_layer", "ffn_act", "hidden_features", "num_registers",
              "patch_size", "in_channels", "qkv_bias", "proj_bias", "ffn_bias", "mask_k_bias", "layer_norm_eps",
              "rope_base")


def _check_agrees(preset: DINOv3Arch, found: DINOv3Arch) -> None:
    diff = [f"{f}: arch {getattr(preset, f)!r} vs checkpoint {getattr(found, f)!r}"
            for f in _STRUCTURE if getattr(preset, f) != getattr(found, f)]
    if diff:
        raise ValueError("the checkpoint's config differs from the requested arch: " + "; ".join(diff))
