"""Networks and their structure: blocks, layer patterns, readouts (the token layout: vitlab.layers)."""

from vitlab.layers.token_layout import TokenLayout
from vitlab.models.block import Block
from vitlab.models.pattern import drop_path_rates, parse_layer_pattern
from vitlab.models.readout import READOUTS, Readout, pool_features
from vitlab.models.timm_interface import TimmInterface
from vitlab.models.vit import HybridViT

__all__ = ["Block", "TokenLayout", "drop_path_rates", "parse_layer_pattern", "READOUTS", "Readout",
           "pool_features", "TimmInterface", "HybridViT"]
