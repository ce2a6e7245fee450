"""Block configs (``L(Block)(...)``) that a model config puts into its ``layer_types``."""
