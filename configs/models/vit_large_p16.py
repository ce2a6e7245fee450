"""ViT-L/16: timm's ``vit_large_patch16_224`` (embed_dim=1024, depth=24, num_heads=16)."""

from configs.models.vit_small_p16 import model

model.dim = 1024
model.num_blocks = 24
model.block_layer.mixer_layer.num_heads = 16
