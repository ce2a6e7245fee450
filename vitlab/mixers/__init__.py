"""Token mixers: ``forward(x [B, T, D], layout) -> [B, T, D]``, each with its ``flop_count``."""

from vitlab.mixers.attention import Attention, flash_attn_available
from vitlab.mixers.gated_conv import GatedConv
from vitlab.mixers.hyena2d import Hyena2D, fft_flop_count
from vitlab.mixers.implicit_filter import ImplicitFilter2D
from vitlab.mixers.neighborhood import NeighborhoodAttention

__all__ = ["Attention", "flash_attn_available", "GatedConv", "Hyena2D", "ImplicitFilter2D", "NeighborhoodAttention",
           "fft_flop_count"]
