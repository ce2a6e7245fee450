"""ViT-Ti/16: timm's ``vit_tiny_patch16_224`` (DeiT-Ti: embed_dim=192, depth=12, num_heads=3)."""

from configs.models.vit_small_p16 import model

model.dim = 192
model.block_layer.mixer_layer.num_heads = 3
