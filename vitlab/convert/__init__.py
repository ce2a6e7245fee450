"""DINOv3 weights (official facebookresearch/dinov3, Hugging Face transformers, timm) <-> vitlab."""

from vitlab.convert.checkpoint import load_vitlab_checkpoint, save_vitlab_checkpoint
from vitlab.convert.dinov3_arch import (
    DINOV3_ARCHS,
    DINOv3Arch,
    arch_of_model,
    dinov3_arch,
    dinov3_model_config,
)
from vitlab.convert.dinov3_hf import dinov3_from_hf
from vitlab.convert.dinov3_official import dinov3_from_official, dinov3_to_official
from vitlab.convert.dinov3_timm import dinov3_from_timm
from vitlab.convert.state_dict import StateDictMismatchError, load_state_dict_file

__all__ = [
    "DINOV3_ARCHS",
    "DINOv3Arch",
    "StateDictMismatchError",
    "arch_of_model",
    "dinov3_arch",
    "dinov3_from_hf",
    "dinov3_from_official",
    "dinov3_from_timm",
    "dinov3_model_config",
    "dinov3_to_official",
    "load_state_dict_file",
    "load_vitlab_checkpoint",
    "save_vitlab_checkpoint",
]
