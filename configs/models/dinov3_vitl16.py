"""DINOv3 ViT-L/16 (hub/backbones.py ``dinov3_vitl16``, weights ``dinov3_vitl16_pretrain_lvd1689m``);
everything else as ``dinov3_vits16``. (The SAT-493M ViT-L also has ``local_cls_norm``, a training-only
norm for local crops that the converter drops.)"""

from configs.models.dinov3_vits16 import model

model.dim = 1024  # hub: embed_dim=1024
model.num_blocks = 24  # hub: depth=24
model.block_layer.mixer_layer.num_heads = 16  # hub: num_heads=16
