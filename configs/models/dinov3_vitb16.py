"""DINOv3 ViT-B/16 (hub/backbones.py ``dinov3_vitb16``, weights ``dinov3_vitb16_pretrain_lvd1689m``);
everything else as ``dinov3_vits16``."""

from configs.models.dinov3_vits16 import model

model.dim = 768  # hub: embed_dim=768
model.block_layer.mixer_layer.num_heads = 12  # hub: num_heads=12
