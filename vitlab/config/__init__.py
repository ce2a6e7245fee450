"""Configs as Python: ``L(cls)(...)`` LazyConfigs on omegaconf, built by hydra's ``instantiate``, and the
typed run sections (``TrainConfig``, ``OptimConfig``, ``DataConfig``, ``EvalConfig``, ``LaunchConfig``) whose keys are fixed."""

from vitlab.config.instantiate import ConfigInstantiationError, ModuleFactory, build, instantiate
from vitlab.config.io import load_config, save_config
from vitlab.config.lazy import L, import_path, is_lazy
from vitlab.config.overrides import (
    UnknownKeyError,
    apply_overrides,
    check_keys,
    config_keys,
    override_item,
    parse_sweep,
    rename_old_keys,
    renamed_key,
)
from vitlab.config.presets import load_model_preset, model_preset_path, model_presets, model_presets_dir
from vitlab.config.run import (DataConfig, EvalConfig, LaunchConfig, OptimConfig, TrainConfig, eval_config,
                               typed_sections)

__all__ = [
    "L",
    "instantiate",
    "build",
    "ModuleFactory",
    "load_config",
    "apply_overrides",
    "override_item",
    "save_config",
    "parse_sweep",
    "config_keys",
    "is_lazy",
    "import_path",
    "ConfigInstantiationError",
    "UnknownKeyError",
    "check_keys",
    "rename_old_keys",
    "renamed_key",
    "TrainConfig",
    "OptimConfig",
    "DataConfig",
    "typed_sections",
    "EvalConfig",
    "LaunchConfig",
    "eval_config",
    "model_presets",
    "model_presets_dir",
    "model_preset_path",
    "load_model_preset",
]
