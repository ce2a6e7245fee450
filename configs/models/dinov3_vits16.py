"""DINOv3 ViT-S/16 (Siméoni et al. 2025), as released: facebookresearch/dinov3 ``hub/backbones.py``
``dinov3_vits16`` (weights ``dinov3_vits16_pretrain_lvd1689m``).

Load the weights with ``vitlab convert dinov3`` (see vitlab/convert); ``vitlab.convert.dinov3_model_config``
builds the same config from a checkpoint's shapes (tests/convert/test_presets.py checks both agree).
vitlab's token layout is ``[patches, CLS, registers]``; DINOv3's ``[CLS, storage, patches]`` gives the
same tokens, since attention is permutation-equivariant and RoPE rotates only patches.
"""

from vitlab.config import L
from vitlab.layers import LayerNorm, Mlp, RotaryEmbedding2D
from vitlab.mixers import Attention
from vitlab.models import Block, HybridViT

model = L(HybridViT)(
    in_channels=3,  # hub: in_chans=3
    num_classes=0,  # a backbone: the DINOv3 head is nn.Identity
    dim=384,  # hub: embed_dim=384
    num_blocks=12,  # hub: depth=12
    patch_size=16,  # hub: patch_size=16
    image_size=224,  # hub: img_size=224 (only the default for FLOP counting; RoPE takes any size)
    num_registers=4,  # hub: n_storage_tokens=4
    readout="cls",  # DINOv3's forward returns the normed CLS token
    pos_embed="none",  # position comes from RoPE only
    class_token=True,
    mask_token=True,  # DinoVisionTransformer.mask_token (iBOT masking)
    norm_layer=L(LayerNorm)(eps=1e-5),  # hub: norm_layer="layernormbf16" = LayerNorm(eps=1e-5)
    cls_norm_layer=None,  # hub: untie_cls_and_patch_norms not set (False)
    block_layer=L(Block)(
        mixer_layer=L(Attention)(
            num_heads=6,  # hub: num_heads=6
            qkv_bias=True,  # hub: qkv_bias=True
            proj_bias=True,  # hub: proj_bias=True
            mask_k_bias=True,  # hub: mask_k_bias=True
            rope_layer=L(RotaryEmbedding2D)(
                base=100.0,  # hub: pos_embed_rope_base=100
                normalize_coords="separate",  # hub: pos_embed_rope_normalize_coords="separate"
                shift_coords=None,  # hub: not set
                jitter_coords=None,  # hub: not set
                rescale_coords=2.0,  # hub: pos_embed_rope_rescale_coords=2 (training only)
            ),
        ),
        ffn_layer=L(Mlp)(ratio=4.0),  # hub: ffn_layer="mlp", ffn_ratio=4 (GELU), ffn_bias=True
        norm_layer=L(LayerNorm)(eps=1e-5),  # hub: norm_layer="layernormbf16"
        layer_scale_init=1e-5,  # hub: layerscale_init=1.0e-05
    ),
)
