"""Example layer_pattern experiment: two Hyena 2D mixers, then RoPE attention, then plain attention.

Starts from the ``"HR" * 6`` small hybrid and changes only the pattern and the block types.
Count it with ``vitlab flops experiments/hybrid_hhra_small.py``.
"""

from configs.models.hybrid_small_p16 import model, rope_attention
from vitlab.config import L
from vitlab.mixers import Attention

plain_attention = rope_attention.copy()
plain_attention.mixer_layer = L(Attention)(num_heads=6)  # no RoPE: this block sees no position at all

model.layer_pattern = "HHRA" * 3
model.layer_types.A = plain_attention
