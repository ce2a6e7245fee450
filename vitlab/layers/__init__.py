"""Plain building blocks, and the token layout every mixer and block reads. They take sizes, and a
swappable part (an FFN's ``act_layer``) as a class or a config, as everywhere in vitlab; none reads a
run config."""

from vitlab.layers.drop_path import drop_path
from vitlab.layers.mlp import Mlp, SwiGLU
from vitlab.layers.norm import LayerNorm, RMSNorm
from vitlab.layers.patch_embed import PatchEmbed
from vitlab.layers.pos_embed import LearnedPosEmbed
from vitlab.layers.residual import ResidualBranch
from vitlab.layers.rope import RotaryEmbedding2D
from vitlab.layers.token_layout import TokenLayout

__all__ = [
    "drop_path", "Mlp", "SwiGLU", "LayerNorm", "RMSNorm", "PatchEmbed",
    "LearnedPosEmbed", "ResidualBranch", "RotaryEmbedding2D", "TokenLayout",
]

_REMOVED = {  # removed names and what replaces them: an error that says so, for one release
    "LayerScale": "vitlab.layers.ResidualBranch(dim, layer_scale_init=...) (a block's ls1 / ls2)",
    "DropPath": "vitlab.layers.ResidualBranch(dim, drop_path_rate=...) in a block, or the function vitlab.layers.drop_path",
}


def __getattr__(name: str):
    if name in _REMOVED:
        raise AttributeError(f"vitlab.layers.{name} was removed (no part used it); use {_REMOVED[name]}")
    raise AttributeError(f"module 'vitlab.layers' has no attribute {name!r}")
