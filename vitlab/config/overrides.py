"""Command-line overrides (``model.num_registers=4``) parsed by hydra's override grammar."""

from __future__ import annotations

import difflib
import inspect
from typing import Any, Iterable

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.utils import get_object
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

from vitlab.compat import renamed_args_of, warn_renamed
from vitlab.config.instantiate import _target_name
from vitlab.config.run import is_typed

__all__ = ["apply_overrides", "override_item", "parse_sweep", "config_keys", "check_keys", "UnknownKeyError",
           "rename_old_keys", "renamed_key"]

_MISSING = object()


class UnknownKeyError(KeyError):
    """A config key that does not exist (a misspelling), with the closest existing keys in its message."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def config_keys(cfg: Any, prefix: str = "") -> list[str]:
    """Every dotted key in ``cfg``, depth first."""
    keys = []
    if isinstance(cfg, DictConfig):
        items = ((str(k), cfg._get_node(k)) for k in cfg.keys())
    elif isinstance(cfg, ListConfig):
        items = ((str(i), cfg._get_node(i)) for i in range(len(cfg)))
    else:
        return keys
    for k, node in items:
        full = f"{prefix}.{k}" if prefix else k
        keys.append(full)
        if isinstance(node, (DictConfig, ListConfig)):
            keys.extend(config_keys(node, full))
    return keys


def _parse(overrides: Iterable[str]):
    return OverridesParser.create().parse_overrides(list(overrides))


def override_item(override: str) -> tuple[str, str]:
    """``(key, value)`` of one override: ``+eval.readout=cls+gap`` -> ``("eval.readout", "cls+gap")``.

    The key comes from hydra's parser (the ``+`` / ``~`` prefix dropped; a malformed override is its error);
    the value is the text after the first ``=`` as written (``1e-3`` stays ``1e-3``: run names built from it
    do not change)."""
    (ov,) = _parse([override])
    return ov.key_or_group, override.split("=", 1)[1] if "=" in override else ""


def apply_overrides(cfg: DictConfig, overrides: Iterable[str]) -> DictConfig:
    """Apply hydra-grammar overrides to ``cfg`` in place and return it.

    ``key=value`` sets an existing key, or a constructor argument of a LazyConfig node that the
    config leaves at its default; a misspelt key raises ``KeyError`` naming the closest keys.
    ``+key=value`` adds a new one, ``~key`` deletes one, except in a typed section (``train``, ``optim``,
    ``data``, ``task.gram``: structured configs), whose keys are fixed. Sweeps (``a=1,2``) belong to ``vitlab sweep``.
    """
    for ov in _parse(overrides):
        key = renamed_key(cfg, ov.key_or_group)
        if ov.is_sweep_override():
            raise ValueError(f"override '{ov.input_line}' is a sweep; use `vitlab sweep` or --multirun for sweeps")
        current = OmegaConf.select(cfg, key, default=_MISSING, throw_on_missing=False)
        parent_key, _, leaf = key.rpartition(".")
        parent = OmegaConf.select(cfg, parent_key, default=None) if parent_key else cfg
        if ov.is_delete():
            if current is _MISSING:
                raise UnknownKeyError(unknown_key_message(cfg, key))
            if is_typed(parent):
                raise KeyError(f"cannot delete '{key}': the keys of {parent_key} are fixed "
                               f"({OmegaConf.get_type(parent).__name__}'s fields); set it instead")
            with open_dict(parent):
                del parent[leaf]
            continue
        if current is _MISSING and is_typed(parent):
            raise UnknownKeyError(unknown_key_message(cfg, key) + f" (the keys of {parent_key} are fixed: "
                                  f"{OmegaConf.get_type(parent).__name__}'s fields)")
        if current is _MISSING and not ov.is_add() and not _is_constructor_arg(cfg, key):
            raise UnknownKeyError(unknown_key_message(cfg, key)
                                  + f" (prefix with '+' to add a new key: +{ov.input_line})")
        with open_dict(cfg):
            OmegaConf.update(cfg, key, ov.value(), merge=False, force_add=True)
    return cfg


def parse_sweep(overrides: Iterable[str]) -> list[list[str]]:
    """Expand sweep overrides (``a=1,2 b=x,y``) into the list of plain override lists (cartesian)."""
    axes: list[list[str]] = []
    for ov in _parse(overrides):
        key = ("+" if ov.is_add() else "") + ov.key_or_group
        if ov.is_sweep_override():
            axes.append([f"{key}={v}" for v in ov.sweep_string_iterator()])
        else:
            axes.append([ov.input_line])
    combos: list[list[str]] = [[]]
    for axis in axes:
        combos = [c + [v] for c in combos for v in axis]
    return combos


def _target(node: Any) -> Any:
    """The class or function a LazyConfig node's ``_target_`` names (None if it has none, or it does not import)."""
    if not isinstance(node, DictConfig) or "_target_" not in node:
        return None
    try:
        target = node._target_
        return get_object(target) if isinstance(target, str) else target
    except Exception:  # noqa: BLE001 - an unresolvable target simply offers no parameters
        return None


def _signature(node: Any) -> tuple[list[str], bool] | None:
    """Keyword parameters of a LazyConfig node's ``_target_`` and whether it takes ``**kwargs``
    (None if it has no resolvable ``_target_``)."""
    target = _target(node)
    try:
        params = inspect.signature(target).parameters.values() if target is not None else None
    except (TypeError, ValueError):  # no signature: the target offers no parameters
        return None
    if params is None:
        return None
    names = [p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return names, any(p.kind == p.VAR_KEYWORD for p in params)


def _target_params(node: Any) -> list[str]:
    """Keyword parameters of a LazyConfig node's ``_target_`` (empty if it has none)."""
    found = _signature(node)
    return found[0] if found else []


def check_keys(cfg: Any, prefix: str = "") -> None:
    """Every argument of every LazyConfig node in ``cfg`` is a parameter of its ``_target_``.

    Raises:
        UnknownKeyError: naming the full key and the closest parameters (``task.koleo_wieght``).
    """
    found = _signature(cfg)
    if found is not None and not found[1]:
        for key in cfg.keys():
            if not str(key).startswith("_") and key not in found[0]:
                full = f"{prefix}.{key}" if prefix else str(key)
                close = difflib.get_close_matches(str(key), found[0], n=3)
                close = [f"{prefix}.{c}" if prefix else c for c in close]
                hint = f"; closest existing keys: {', '.join(close)}" if close else ""
                raise UnknownKeyError(f"config has no key '{full}' ({_target_name(cfg._target_)} takes no "
                                      f"argument '{key}'){hint}")
    for path, node in _config_children(cfg, prefix):
        check_keys(node, path)


def _config_children(cfg: Any, prefix: str) -> list[tuple[str, Any]]:
    """The dict and list nodes directly under ``cfg``, each with its dotted path."""
    if isinstance(cfg, DictConfig):
        children = [(f"{prefix}.{k}" if prefix else str(k), cfg._get_node(k)) for k in cfg.keys()]
    elif isinstance(cfg, ListConfig):
        children = [(f"{prefix}[{i}]", cfg._get_node(i)) for i in range(len(cfg))]
    else:
        children = []
    return [(path, node) for path, node in children if isinstance(node, (DictConfig, ListConfig))]


def rename_old_keys(cfg: Any, prefix: str = "") -> Any:
    """Rename, in place, every LazyConfig argument that its ``_target_`` renamed (``model.block_cfg`` ->
    ``model.block_layer``: :func:`vitlab.compat.renamed_kwargs`), with a ``FutureWarning`` naming both keys;
    a saved config of an older vitlab loads as a new one. Returns ``cfg``.

    Raises:
        UnknownKeyError: a node holds an old key and its new name both.
    """
    full = (lambda k: f"{prefix}.{k}") if prefix else str  # noqa: E731
    target = _target(cfg)
    for old, new in (renamed_args_of(target) if target is not None else {}).items():
        if old in cfg:
            if new in cfg:
                raise UnknownKeyError(f"config has '{full(old)}' and its new name '{full(new)}'; keep '{full(new)}'")
            warn_renamed(old, new, f"config key '{full(old)}'")
            with open_dict(cfg):
                cfg[new] = cfg._get_node(old)
                del cfg[old]
    for path, node in _config_children(cfg, prefix):
        rename_old_keys(node, path)
    return cfg


def renamed_key(cfg: DictConfig, key: str) -> str:
    """``key`` spelt with the new name of each LazyConfig argument a ``_target_`` renamed
    (``model.block_cfg.mixer.num_heads`` -> ``model.block_layer.mixer_layer.num_heads``), warning once if it changed."""
    node, parts = cfg, []
    for part in key.split("."):
        target = _target(node)
        new = renamed_args_of(target).get(part) if target is not None else None
        if new is not None and part not in node:
            part = new
        parts.append(part)
        node = node._get_node(part) if isinstance(node, DictConfig) and part in node else None
    renamed = ".".join(parts)
    if renamed != key:
        warn_renamed(key, renamed, "override key")
    return renamed


def _is_constructor_arg(cfg: DictConfig, key: str) -> bool:
    """A key absent from the config but accepted by its node's constructor (left at its default)."""
    parent_key, _, leaf = key.rpartition(".")
    parent = OmegaConf.select(cfg, parent_key, default=None) if parent_key else cfg
    return leaf in _target_params(parent)


def unknown_key_message(cfg: DictConfig, key: str, prefix: str = "") -> str:
    """"config has no key 'train.max_step'; closest existing keys: train.max_steps".

    ``key`` is relative to ``cfg`` and shown under ``prefix``."""
    parent_key, _, _ = key.rpartition(".")
    parent = OmegaConf.select(cfg, parent_key, default=None) if parent_key else cfg
    candidates = config_keys(cfg) + [f"{parent_key}.{p}" if parent_key else p for p in _target_params(parent)]
    shown = (lambda k: f"{prefix}.{k}") if prefix else (lambda k: k)  # noqa: E731
    close = difflib.get_close_matches(key, sorted(set(candidates)), n=3, cutoff=0.5)
    hint = f"; closest existing keys: {', '.join(shown(k) for k in close)}" if close else ""
    return f"config has no key '{shown(key)}'{hint}"
