"""Plain building blocks. They take sizes, and a swappable part (an FFN's ``act_layer``) as a class
or a config, as everywhere in vitlab; none reads a run config."""

from vitlab.layers.drop_path import DropPath, drop_path
from vitlab.layers.layer_scale import LayerScale
from vitlab.layers.mlp import Mlp, SwiGLU
from vitlab.layers.norm import LayerNorm, RMSNorm
from vitlab.layers.patch_embed import PatchEmbed
from vitlab.layers.pos_embed import LearnedPosEmbed
from vitlab.layers.residual import ResidualBranch
from vitlab.layers.rope import RotaryEmbedding2D

__all__ = [
    "DropPath", "drop_path", "LayerScale", "Mlp", "SwiGLU", "LayerNorm", "RMSNorm", "PatchEmbed",
    "LearnedPosEmbed", "ResidualBranch", "RotaryEmbedding2D",
]
