"""Token mixers: ``forward(x [B, T, D], layout) -> [B, T, D]``, each with its ``flop_count``."""

from vitlab.mixers.attention import Attention, flash_attn_available
from vitlab.mixers.chunk_gla import chunk_gla
from vitlab.mixers.gated_conv import GatedConv
from vitlab.mixers.gla import GLA2D
from vitlab.mixers.hyena2d import Hyena2D, fft_flop_count
from vitlab.mixers.implicit_filter import ImplicitFilter2D
from vitlab.mixers.linear_scan import linear_scan
from vitlab.mixers.mamba2d import Mamba2D
from vitlab.mixers.neighborhood import NeighborhoodAttention
from vitlab.mixers.selective_scan import selective_scan

__all__ = ["Attention", "flash_attn_available", "GatedConv", "GLA2D", "Hyena2D", "ImplicitFilter2D", "Mamba2D",
           "NeighborhoodAttention", "chunk_gla", "fft_flop_count", "linear_scan", "selective_scan"]
