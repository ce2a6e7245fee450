"""Configs as Python: ``L(cls)(...)`` LazyConfigs on omegaconf, built by hydra's ``instantiate``."""

from vitlab.config.instantiate import ConfigInstantiationError, build, instantiate
from vitlab.config.io import load_config, save_config
from vitlab.config.lazy import L, import_path, is_lazy
from vitlab.config.overrides import apply_overrides, config_keys, parse_sweep

__all__ = [
    "L",
    "instantiate",
    "build",
    "load_config",
    "apply_overrides",
    "save_config",
    "parse_sweep",
    "config_keys",
    "is_lazy",
    "import_path",
    "ConfigInstantiationError",
]
