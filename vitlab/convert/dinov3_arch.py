"""The DINOv3 ViT architectures (Siméoni et al. 2025, "DINOv3") as vitlab configs.

A :class:`DINOv3Arch` holds the numbers that tell one DINOv3 ViT from another: what
facebookresearch/dinov3 ``hub/backbones.py`` passes to ``DinoVisionTransformer``. Converters infer
one from a checkpoint's shapes (or an HF/timm config) and turn it into an ``L(HybridViT)`` config
with :func:`dinov3_model_config`; ``configs/models/dinov3_*.py`` spell the released ones out, and a
test checks that both give the same config.

vitlab runs DINOv3 in its own token layout ``[patches, CLS, registers]`` where DINOv3 uses
``[CLS, storage (registers), patches]``. Attention is equivariant to a permutation of its tokens
and RoPE rotates only patches, so every token's output is the same; only its index moves.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from omegaconf import DictConfig
from torch import nn

from vitlab.config import L
from vitlab.layers import LayerNorm, Mlp, RotaryEmbedding2D, SwiGLU
from vitlab.mixers import Attention
from vitlab.models import Block, HybridViT

__all__ = [
    "DINOV3_ARCHS",
    "DINOV3_FFN_ACT",
    "FFN_ACTIVATIONS",
    "DINOv3Arch",
    "arch_of_model",
    "dinov3_arch",
    "dinov3_model_config",
    "ffn_act_config",
    "ffn_act_name",
]

# The FFN activations an architecture can name (``DINOv3Arch.ffn_act``): the module class, and the
# attributes that tell it from the others (also its constructor arguments). DINOv3 itself uses GELU
# in its MLP and SiLU in its SwiGLU; transformers' DINOv3ViTConfig makes it a choice (``hidden_act``).
FFN_ACTIVATIONS: dict[str, tuple[type[nn.Module], dict]] = {
    "gelu": (nn.GELU, {"approximate": "none"}),  # the exact erf form
    "gelu_tanh": (nn.GELU, {"approximate": "tanh"}),
    "silu": (nn.SiLU, {}),
    "relu": (nn.ReLU, {}),
    "relu6": (nn.ReLU6, {}),
    "leaky_relu": (nn.LeakyReLU, {"negative_slope": 0.01}),
    "sigmoid": (nn.Sigmoid, {}),
    "tanh": (nn.Tanh, {}),
    "mish": (nn.Mish, {}),
    "hardswish": (nn.Hardswish, {}),
    "identity": (nn.Identity, {}),  # the gated FFN becomes Shazeer's bilinear GLU
}
DINOV3_FFN_ACT = {"mlp": "gelu", "swiglu": "silu"}  # what DINOv3 builds in


def ffn_act_config(name: str) -> DictConfig:
    """The ``act_layer`` config of the FFN activation ``name`` (a key of :data:`FFN_ACTIVATIONS`)."""
    cls, attrs = FFN_ACTIVATIONS[name]
    return L(cls)(**attrs)


def ffn_act_name(module: nn.Module) -> str | None:
    """The :data:`FFN_ACTIVATIONS` name of an activation module, or None if it has none."""
    for name, (cls, attrs) in FFN_ACTIVATIONS.items():
        # type(), not isinstance: a subclass (timm's GELU variants, say) may compute something else
        if type(module) is cls and all(getattr(module, k, None) == v for k, v in attrs.items()):
            return name
    return None


@dataclass(frozen=True)
class DINOv3Arch:
    """One DINOv3 ViT architecture, in DINOv3's own terms.

    Args:
        embed_dim, depth, num_heads, patch_size, in_channels: as ``DinoVisionTransformer``.
        ffn_layer: ``mlp`` (GELU) or ``swiglu`` (SiLU-gated, hidden ``2/3 * ratio * D`` aligned to 8).
        ffn_act: the FFN's activation, a key of :data:`FFN_ACTIVATIONS` (``"gelu"`` makes the gated
            FFN a GeGLU); None, or the name of DINOv3's own (``gelu`` for ``mlp``, ``silu`` for
            ``swiglu``), means DINOv3's own and is stored as None.
        ffn_ratio: hidden width over ``embed_dim`` (DINOv3's ``ffn_ratio``); None when ``ffn_hidden_features``
            gives the width directly (a checkpoint whose width no ratio reproduces).
        ffn_hidden_features: the FFN's hidden width, when ``ffn_ratio`` is None.
        num_registers: DINOv3's ``n_storage_tokens``.
        qkv_bias, proj_bias, ffn_bias, mask_k_bias: as ``DinoVisionTransformer``.
        layer_norm_eps: 1e-5 for the released models (``norm_layer="layernormbf16"``).
        untie_cls_norm: a separate final norm for CLS and registers (``untie_cls_and_patch_norms``).
        rope_base, rope_normalize_coords: RoPE periods and coordinate normalisation.
        rope_shift_coords, rope_jitter_coords, rope_rescale_coords: train-time RoPE augmentation.
        layer_scale_init: LayerScale's initial value (only matters before weights are loaded).
        image_size: the reference input size (default for FLOP counting).
    """

    embed_dim: int
    depth: int
    num_heads: int
    ffn_layer: Literal["mlp", "swiglu"] = "mlp"
    ffn_ratio: float | None = 4.0
    ffn_hidden_features: int | None = None
    num_registers: int = 4
    patch_size: int = 16
    in_channels: int = 3
    qkv_bias: bool = True
    proj_bias: bool = True
    ffn_bias: bool = True
    mask_k_bias: bool = True
    layer_norm_eps: float = 1e-5
    untie_cls_norm: bool = False
    rope_base: float = 100.0
    rope_normalize_coords: Literal["min", "max", "separate"] = "separate"
    rope_shift_coords: float | None = None
    rope_jitter_coords: float | None = None
    rope_rescale_coords: float | None = 2.0
    layer_scale_init: float = 1e-5
    image_size: int | tuple[int, int] = 224
    ffn_act: str | None = None  # last, so positional construction keeps its meaning

    def __post_init__(self):
        if self.ffn_layer not in ("mlp", "swiglu"):
            raise ValueError(f"ffn_layer must be 'mlp' or 'swiglu', got {self.ffn_layer!r}")
        if self.ffn_act is not None and self.ffn_act not in FFN_ACTIVATIONS:
            raise ValueError(f"ffn_act must be None or one of {', '.join(FFN_ACTIVATIONS)}, got {self.ffn_act!r}")
        if self.ffn_act == DINOV3_FFN_ACT[self.ffn_layer]:
            # one spelling of DINOv3's own activation, so an inferred arch equals the preset
            object.__setattr__(self, "ffn_act", None)
        if (self.ffn_ratio is None) == (self.ffn_hidden_features is None):
            raise ValueError(f"give exactly one of ffn_ratio or ffn_hidden_features, "
                             f"got {self.ffn_ratio}, {self.ffn_hidden_features}")
        if self.embed_dim % self.num_heads or (self.embed_dim // self.num_heads) % 4:
            raise ValueError(
                f"embed_dim={self.embed_dim} must split into num_heads={self.num_heads} heads whose width is "
                "divisible by 4 (2D RoPE)"
            )

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    @property
    def hidden_features(self) -> int:
        """The FFN's hidden width (per branch for SwiGLU)."""
        if self.ffn_hidden_features is not None:
            return self.ffn_hidden_features
        return ffn_hidden_features(self.ffn_layer, self.embed_dim, self.ffn_ratio)

    def replace(self, **changes) -> DINOv3Arch:
        return dataclasses.replace(self, **changes)


def ffn_hidden_features(ffn_layer: str, dim: int, ratio: float) -> int:
    """DINOv3's hidden width: ``int(dim * ratio)``; SwiGLU takes 2/3 of it, rounded up to 8."""
    hidden = int(dim * ratio)
    if ffn_layer == "swiglu":
        hidden = int(hidden * 2 / 3)
        hidden += -hidden % 8
    return hidden


def ffn_width_fields(ffn_layer: str, dim: int, hidden: int) -> dict:
    """``ffn_ratio`` when a ratio reproduces ``hidden`` (so configs read as the presets), else the width."""
    ratio = hidden / dim if ffn_layer == "mlp" else hidden * 3 / (2 * dim)
    for candidate in (round(ratio * 8) / 8, ratio):  # released ratios are simple fractions (4, 6, 3)
        if candidate > 0 and ffn_hidden_features(ffn_layer, dim, candidate) == hidden:
            return {"ffn_ratio": float(candidate), "ffn_hidden_features": None}
    return {"ffn_ratio": None, "ffn_hidden_features": hidden}


# facebookresearch/dinov3 hub/backbones.py (dinov3_vits16, dinov3_vits16plus, dinov3_vitb16, dinov3_vitl16):
# all four: patch 16, 4 storage tokens, qkv_bias + mask_k_bias, LayerNorm eps 1e-5 ("layernormbf16"),
# LayerScale 1e-5, RoPE base 100 with "separate" coordinates and rescale_coords=2, tied final norm.
DINOV3_ARCHS: dict[str, DINOv3Arch] = {
    "vits16": DINOv3Arch(embed_dim=384, depth=12, num_heads=6, ffn_layer="mlp", ffn_ratio=4.0),
    "vits16plus": DINOv3Arch(embed_dim=384, depth=12, num_heads=6, ffn_layer="swiglu", ffn_ratio=6.0),
    "vitb16": DINOv3Arch(embed_dim=768, depth=12, num_heads=12, ffn_layer="mlp", ffn_ratio=4.0),
    "vitl16": DINOv3Arch(embed_dim=1024, depth=24, num_heads=16, ffn_layer="mlp", ffn_ratio=4.0),
}


def dinov3_arch(name: str | DINOv3Arch) -> DINOv3Arch:
    """A released architecture by name (``vits16``, ``vits16plus``, ``vitb16``, ``vitl16``)."""
    if isinstance(name, DINOv3Arch):
        return name
    key = name.lower().removeprefix("dinov3_")
    if key not in DINOV3_ARCHS:
        raise ValueError(f"unknown DINOv3 architecture {name!r}; known: {', '.join(DINOV3_ARCHS)}")
    return DINOV3_ARCHS[key]


def matching_arch(embed_dim: int, depth: int, ffn_layer: str, hidden: int) -> DINOv3Arch | None:
    """The released architecture with these shapes, if one (and only one) has them."""
    shapes = (embed_dim, depth, ffn_layer, hidden)
    found = [a for a in DINOV3_ARCHS.values() if (a.embed_dim, a.depth, a.ffn_layer, a.hidden_features) == shapes]
    return found[0] if len(found) == 1 else None


def dinov3_model_config(arch: str | DINOv3Arch) -> DictConfig:
    """The ``L(HybridViT)`` config that runs ``arch`` exactly (no head: ``num_classes=0``, CLS readout)."""
    a = dinov3_arch(arch)
    width = {"ratio": a.ffn_ratio} if a.ffn_ratio is not None else {"hidden_features": a.ffn_hidden_features}
    bias = {} if a.ffn_bias else {"bias": False}
    act = {} if a.ffn_act is None else {"act_layer": ffn_act_config(a.ffn_act)}
    if a.ffn_layer == "mlp":
        ffn = L(Mlp)(**width, **bias, **act)
    else:
        ffn = L(SwiGLU)(**width, align_to=8, **bias, **act)
    rope = L(RotaryEmbedding2D)(
        base=a.rope_base,
        normalize_coords=a.rope_normalize_coords,
        shift_coords=a.rope_shift_coords,
        jitter_coords=a.rope_jitter_coords,
        rescale_coords=a.rope_rescale_coords,
    )
    mixer = L(Attention)(num_heads=a.num_heads, qkv_bias=a.qkv_bias, proj_bias=a.proj_bias,
                         mask_k_bias=a.mask_k_bias and a.qkv_bias, rope_layer=rope)
    return L(HybridViT)(
        in_channels=a.in_channels,
        num_classes=0,
        dim=a.embed_dim,
        num_blocks=a.depth,
        patch_size=a.patch_size,
        image_size=a.image_size,
        num_registers=a.num_registers,
        readout="cls",
        pos_embed="none",
        class_token=True,
        mask_token=True,
        norm_layer=L(LayerNorm)(eps=a.layer_norm_eps),
        cls_norm_layer=L(LayerNorm)(eps=a.layer_norm_eps) if a.untie_cls_norm else None,
        block_layer=L(Block)(mixer_layer=mixer, ffn_layer=ffn, norm_layer=L(LayerNorm)(eps=a.layer_norm_eps), layer_scale_init=a.layer_scale_init),
    )


def arch_of_model(model: HybridViT) -> DINOv3Arch:
    """The DINOv3 architecture a vitlab model implements; raises naming every part DINOv3 lacks."""
    if not isinstance(model, HybridViT):
        raise TypeError(f"expected a HybridViT, got {type(model).__name__}")
    problems = []
    if not model.num_cls:
        problems.append("no CLS token (class_token=False)")
    if model.pos_embed is not None:
        problems.append("a learned absolute position embedding (DINOv3 has pos_embed='none')")
    if not isinstance(model.norm, nn.LayerNorm) or model.norm.bias is None:
        problems.append(f"final norm {type(model.norm).__name__} (DINOv3 uses LayerNorm with bias)")
    if model.cls_norm is not None and not isinstance(model.cls_norm, nn.LayerNorm):
        problems.append(f"cls_norm {type(model.cls_norm).__name__} (DINOv3 uses LayerNorm)")
    signatures = set()
    for i, block in enumerate(model.blocks):
        mixer, ffn = getattr(block, "mixer", None), getattr(block, "ffn", None)
        if not isinstance(block, Block) or not isinstance(mixer, Attention):
            problems.append(f"block {i} is {type(block).__name__}/{type(mixer).__name__}, not Block/Attention")
            continue
        if not isinstance(mixer.rope, RotaryEmbedding2D):
            problems.append(f"block {i} attention has no 2D RoPE")
            continue
        if mixer.rope.base is None:
            problems.append(f"block {i} RoPE uses min/max periods; only base= converts")
        if not isinstance(mixer.q_norm, nn.Identity):
            problems.append(f"block {i} has QK-norm")
        if block.ls1.gamma is None or block.ls2.gamma is None:
            problems.append(f"block {i} has no LayerScale")
        if not (isinstance(block.norm1, nn.LayerNorm) and isinstance(block.norm2, nn.LayerNorm)):
            problems.append(f"block {i} norms are not LayerNorm")
        if isinstance(ffn, Mlp):
            ffn_sig = ("mlp", ffn.fc1.out_features, ffn.fc1.bias is not None)
        elif isinstance(ffn, SwiGLU):
            ffn_sig = ("swiglu", ffn.hidden_features, ffn.w12.bias is not None)
        else:
            problems.append(f"block {i} FFN is {type(ffn).__name__}, not Mlp or SwiGLU")
            continue
        act = ffn_act_name(ffn.act)
        if act is None:
            problems.append(f"block {i} FFN activation {ffn.act!r} is none of {', '.join(FFN_ACTIVATIONS)}")
            continue
        ffn_sig += (act,)
        rope = mixer.rope
        signatures.add((
            ffn_sig, mixer.num_heads, mixer.qkv.bias is not None, mixer.proj.bias is not None,
            mixer.bias_mask is not None, getattr(block.norm1, "eps", None),
            (rope.base, rope.normalize_coords, rope.shift_coords, rope.jitter_coords, rope.rescale_coords),
        ))
    if len(signatures) > 1:
        problems.append(f"blocks differ from each other ({len(signatures)} kinds); DINOv3 blocks are identical")
    if problems or not signatures:
        raise ValueError("the model is not a DINOv3 architecture: " + "; ".join(problems or ["no blocks"]))
    (ffn_layer, hidden, ffn_bias, act), heads, qkv_bias, proj_bias, masked, eps, rope = signatures.pop()
    ls, (h, w) = model.blocks[0].ls1, model.image_size
    return DINOv3Arch(
        embed_dim=model.dim, depth=model.num_blocks, num_heads=heads, ffn_layer=ffn_layer, ffn_act=act,
        **ffn_width_fields(ffn_layer, model.dim, hidden),
        num_registers=model.num_registers, patch_size=model.patch_size, in_channels=model.in_channels,
        qkv_bias=qkv_bias, proj_bias=proj_bias, ffn_bias=ffn_bias, mask_k_bias=masked, layer_norm_eps=eps,
        untie_cls_norm=model.cls_norm is not None, rope_base=rope[0], rope_normalize_coords=rope[1],
        rope_shift_coords=rope[2], rope_jitter_coords=rope[3], rope_rescale_coords=rope[4],
        layer_scale_init=ls.layer_scale_init, image_size=h if h == w else (h, w),
    )
