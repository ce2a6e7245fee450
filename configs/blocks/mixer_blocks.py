"""Blocks of the sequence and local mixers, each a pattern letter beside ``hybrid_small_p16``'s ``H`` and ``R``
(ViT-S widths: 6 heads; a smaller model sets its own ``num_heads``), with the papers' defaults:

- ``S``: Mamba 2D, Vision Mamba's bidirectional scan (Zhu et al. 2024; d_state 16, expand 2);
- ``V``: Mamba 2D, VMamba's four-direction cross scan (Liu et al. 2024);
- ``L``: gated linear attention over the grid, bidirectional as ViG (Liao et al. 2024);
- ``N``: 2D neighborhood attention, a 7x7 window as NAT (Hassani et al. 2023), 2D RoPE;
- ``C``: MambaOut's gated depthwise convolution, kernel 7 (Yu and Wang 2024).

    from configs.blocks.mixer_blocks import MIXER_BLOCKS as _MIXER_BLOCKS  # a leading _: not a config key
    model.layer_types.update(_MIXER_BLOCKS); model.layer_pattern = "SR" * 6
"""

from vitlab.config import L
from vitlab.layers import LayerNorm, Mlp, RotaryEmbedding2D
from vitlab.mixers import GLA2D, GatedConv, Mamba2D, NeighborhoodAttention
from vitlab.models import Block


def _block(mixer):
    """A pre-norm block around ``mixer`` with ``hybrid_small_p16``'s FFN, norm and LayerScale."""
    return L(Block)(mixer_layer=mixer, ffn_layer=L(Mlp)(ratio=4.0), norm_layer=L(LayerNorm)(eps=1e-6),
                    layer_scale_init=1e-5)


MIXER_BLOCKS = {
    "S": _block(L(Mamba2D)(scan="bidirectional")),
    "V": _block(L(Mamba2D)(scan="cross")),
    "L": _block(L(GLA2D)(num_heads=6)),
    "N": _block(L(NeighborhoodAttention)(num_heads=6, window=7, rope_layer=L(RotaryEmbedding2D)(base=100.0))),
    "C": _block(L(GatedConv)(kernel_size=7)),
}
