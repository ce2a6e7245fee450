"""ViT-B/16: timm's ``vit_base_patch16_224`` (embed_dim=768, depth=12, num_heads=12)."""

from configs.models.vit_small_p16 import model

model.dim = 768
model.block_layer.mixer_layer.num_heads = 12
