"""A small hybrid: Hyena 2D mixers alternating with 2D-RoPE attention (``"HR" * 6``), 4 registers.

Width, depth and heads are ViT-S's; position comes from the Hyena convolutions and RoPE, so there is
no absolute position embedding (as in DINOv3).
"""

from vitlab.config import L
from vitlab.layers import LayerNorm, Mlp, RotaryEmbedding2D
from vitlab.mixers import Attention, Hyena2D
from vitlab.models import Block, HybridViT

hyena = L(Block)(
    mixer_layer=L(Hyena2D)(order=2, filter_hidden=64),  # Hyena's default order 2 (Poli et al. 2023)
    ffn_layer=L(Mlp)(ratio=4.0),
    norm_layer=L(LayerNorm)(eps=1e-6),
    layer_scale_init=1e-5,  # DINOv3 / CaiT LayerScale init
)
rope_attention = L(Block)(
    mixer_layer=L(Attention)(num_heads=6, rope_layer=L(RotaryEmbedding2D)(base=100.0)),  # DINOv3's RoPE base
    ffn_layer=L(Mlp)(ratio=4.0),
    norm_layer=L(LayerNorm)(eps=1e-6),
    layer_scale_init=1e-5,
)

model = L(HybridViT)(
    in_channels=3,
    num_classes=1000,
    dim=384,
    num_blocks=12,
    patch_size=16,
    image_size=224,
    num_registers=4,  # Darcet et al. 2024 use 4 registers for ViT-S/B
    readout="cls",
    pos_embed="none",
    norm_layer=L(LayerNorm)(eps=1e-6),
    layer_pattern="HR" * 6,
    layer_types={"H": hyena, "R": rope_attention},
    max_drop_path_rate=0.1,
    drop_path_schedule="linear",
)
