"""ViT-S/16: the architecture of timm's ``vit_small_patch16_224`` (Dosovitskiy et al. 2021; DeiT-S)."""

from vitlab.config import L
from vitlab.layers import LayerNorm, Mlp
from vitlab.mixers import Attention
from vitlab.models import Block, HybridViT

model = L(HybridViT)(
    in_channels=3,
    num_classes=1000,
    dim=384,  # timm vit_small_patch16_224: embed_dim=384, depth=12, num_heads=6
    num_blocks=12,
    patch_size=16,
    image_size=224,
    num_registers=0,
    readout="cls",
    pos_embed="learned",
    norm_layer=L(LayerNorm)(eps=1e-6),  # timm ViT uses LayerNorm(eps=1e-6)
    block_layer=L(Block)(
        mixer_layer=L(Attention)(num_heads=6, qkv_bias=True),
        ffn_layer=L(Mlp)(ratio=4.0),
        norm_layer=L(LayerNorm)(eps=1e-6),
    ),
)
