"""DINOv3 ViT-S+/16: ViT-S/16 with a SwiGLU FFN (hub/backbones.py ``dinov3_vits16plus``,
weights ``dinov3_vits16plus_pretrain_lvd1689m``); everything else as ``dinov3_vits16``."""

from configs.models.dinov3_vits16 import model
from vitlab.config import L
from vitlab.layers import SwiGLU

# hub: ffn_layer="swiglu", ffn_ratio=6 -> hidden int(int(384 * 6) * 2 / 3) = 1536, aligned to 8 (SwiGLUFFN default)
model.block_layer.ffn_layer = L(SwiGLU)(ratio=6.0, align_to=8)
