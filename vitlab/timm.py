"""vitlab's model presets in timm's model registry.

``import vitlab.timm`` registers every preset of ``configs/models/`` as ``vitlab_<preset>``, with timm's
own ``register_model`` and ``generate_default_cfgs``, so that::

    import timm
    import vitlab.timm  # noqa: F401  (registers the presets)

    model = timm.create_model("vitlab_hybrid_small_p16", pretrained=False, num_classes=10)
    backbone = timm.create_model("vitlab_hybrid_small_p16", features_only=True, out_indices=(3, 7, 11))
    tuned = timm.create_model("vitlab_vit_small_p16", pretrained=True,
                              pretrained_cfg_overlay=dict(file="runs/x/checkpoints/best.pt"))

Registration happens when this module is imported, not on ``import vitlab``: vitlab has no import-time
side effects and timm is an optional dependency. It reads the preset files (to give each its
``pretrained_cfg``: input size, classes) and builds no model. timm has no plugin mechanism that would
import it for you.

``timm.create_model`` arguments: timm's ``in_chans``, ``img_size``, ``drop_rate``, ``drop_path_rate``
and ``global_pool`` (``token`` -> ``cls``, ``avg`` -> ``gap``; or a vitlab readout) are translated, any
other keyword is a ``HybridViT`` argument that overrides the preset's (``num_blocks=``, ``layer_pattern=``,
``device="meta"``). ``pretrained=True`` loads ``pretrained_cfg_overlay=dict(file=...)``: a vitlab
checkpoint (``{"model": state_dict, "config": YAML}``, read with ``weights_only=True``) or a
``.safetensors`` state dict, in vitlab's names. No weights are published, so without a file there is
nothing to load. See docs/interop.md.
"""

from __future__ import annotations

import inspect
import math
from functools import partial
from typing import Any

import torch
from omegaconf import DictConfig

try:
    from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
except ImportError as exc:  # timm is optional (pip install vitlab[dev] or timm)
    raise ImportError("vitlab.timm registers vitlab's presets with timm, which is not installed: pip install timm") from exc

from vitlab.config import instantiate, load_model_preset, model_presets
from vitlab.layers.pos_embed import resample_grid
from vitlab.models import HybridViT
from vitlab.models.timm_interface import default_pretrained_cfg

__all__ = ["PREFIX", "create_vitlab_model", "checkpoint_filter_fn", "registered_models"]

PREFIX = "vitlab_"

# timm's names of the HybridViT arguments timm's create_model passes (vision_transformer.py's)
_TIMM_ARGS = {"in_chans": "in_channels", "img_size": "image_size", "drop_rate": "dropout_rate",
              "drop_path_rate": "max_drop_path_rate"}
_TIMM_POOLS = {"token": "cls", "avg": "gap"}  # timm global_pool -> vitlab readout


def _hybrid_vit_args(timm_kwargs: dict[str, Any]) -> dict[str, Any]:
    """timm's ``create_model`` keywords as ``HybridViT`` arguments."""
    args = {_TIMM_ARGS.get(k, k): v for k, v in timm_kwargs.items() if k != "global_pool"}
    clash = [k for k, v in _TIMM_ARGS.items() if k in timm_kwargs and v in timm_kwargs]
    if clash:
        raise ValueError(f"give timm's {clash[0]!r} or vitlab's {_TIMM_ARGS[clash[0]]!r}, not both")
    pool = timm_kwargs.get("global_pool")
    if pool is not None:
        if pool not in _TIMM_POOLS and pool not in ("cls", "gap", "register_concat"):
            raise ValueError(f"global_pool={pool!r}: vitlab reads out with 'token' (= 'cls'), 'avg' (= 'gap') or "
                             "'register_concat'; for unpooled tokens use features_only=True or forward_intermediates")
        args["readout"] = _TIMM_POOLS.get(pool, pool)
    return args


def _build(model_cfg: DictConfig, **timm_kwargs: Any) -> HybridViT:
    """timm's ``model_cls``: the preset's model with timm's keywords applied."""
    return instantiate(model_cfg, **_hybrid_vit_args(timm_kwargs))


def checkpoint_filter_fn(state_dict: dict[str, torch.Tensor], model: HybridViT) -> dict[str, torch.Tensor]:
    """Fit a vitlab state dict to ``model`` before timm loads it (timm's ``pretrained_filter_fn``).

    A learned position embedding of another (square) grid is resampled bicubically, as timm's ViT does;
    the iBOT mask token, used only in masked pretraining, is dropped when the model has none and taken
    from the model (its init, zeros) when the file has none.
    """
    out = dict(state_dict)
    own = model.state_dict()
    key = "pos_embed.pos_embed"
    if key in out and key in own and out[key].shape != own[key].shape:
        pe, prefix = out[key], model.pos_embed.num_prefix
        side = math.isqrt(pe.shape[1] - prefix)
        if side * side != pe.shape[1] - prefix:
            raise ValueError(f"{key} {tuple(pe.shape)}: {pe.shape[1] - prefix} patch positions are not a square grid; "
                             f"build the model with the checkpoint's image size (img_size=)")
        grid = (model.pos_embed.grid_h, model.pos_embed.grid_w)
        out[key] = torch.cat((pe[:, :prefix], resample_grid(pe[:, prefix:], (side, side), grid)), dim=1)
    if "mask_token" in out and "mask_token" not in own:
        del out["mask_token"]
    elif "mask_token" in own and "mask_token" not in out:
        out["mask_token"] = own["mask_token"]
    return out


def create_vitlab_model(preset: str, pretrained: bool = False, **kwargs: Any) -> torch.nn.Module:
    """``timm.create_model("vitlab_<preset>", ...)``: timm's ``build_model_with_cfg`` on the preset, with
    feature extraction through ``forward_intermediates`` (``feature_cls="getter"``, out_indices 3 by
    default: the last three blocks), as timm's ViT."""
    out_indices = kwargs.pop("out_indices", 3)
    return build_model_with_cfg(
        partial(_build, load_model_preset(preset)),
        PREFIX + preset,
        pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(out_indices=out_indices, feature_cls="getter"),
        **kwargs,
    )


def _preset_pretrained_cfg(model_cfg: DictConfig) -> dict[str, Any]:
    """timm's ``pretrained_cfg`` of a preset, from its config (no model is built)."""
    defaults = {k: p.default for k, p in inspect.signature(HybridViT).parameters.items()}

    def arg(name: str) -> Any:
        return model_cfg[name] if name in model_cfg else defaults[name]

    size = arg("image_size")
    size = (size, size) if isinstance(size, int) else tuple(size)
    return default_pretrained_cfg(in_channels=arg("in_channels"), image_size=size, num_classes=arg("num_classes"))


def _entrypoint(preset: str):
    def entrypoint(pretrained: bool = False, **kwargs: Any) -> torch.nn.Module:
        return create_vitlab_model(preset, pretrained, **kwargs)

    # timm registers an entrypoint under its __name__, in the list of its module
    entrypoint.__name__ = entrypoint.__qualname__ = PREFIX + preset
    entrypoint.__module__ = __name__
    entrypoint.__doc__ = f"vitlab's ``{preset}`` preset (configs/models/{preset}.py) built by timm."
    return entrypoint


def registered_models() -> list[str]:
    """The timm names this module registered: ``vitlab_<preset>`` for every preset."""
    return [PREFIX + p for p in _PRESETS]


_PRESETS = model_presets()
# register_model looks the pretrained cfgs up in the entrypoint's module, under this name
default_cfgs = generate_default_cfgs({PREFIX + p: _preset_pretrained_cfg(load_model_preset(p)) for p in _PRESETS})
for _preset in _PRESETS:
    # module attributes too, as timm's own entrypoints (register_model lists them in __all__)
    globals()[PREFIX + _preset] = register_model(_entrypoint(_preset))
