"""`instantiate` and `build`: hydra's instantiate with errors that name the failing config node.

Hydra wraps a constructor's exception in ``InstantiationException`` and, for nested builds, in
another one per level; the root cause is easy to lose (REFERENCES: "Hydra hides the root cause").
Here every failure becomes one ``ConfigInstantiationError`` naming the full config path
(``model.layer_types.H``), the ``_target_`` and the original exception.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Callable, Union

import hydra.utils
from hydra.errors import InstantiationException
from omegaconf import DictConfig, ListConfig, OmegaConf

from vitlab.config.lazy import is_lazy

if TYPE_CHECKING:
    from torch import nn

__all__ = ["ConfigInstantiationError", "instantiate", "build", "ModuleFactory"]

ModuleFactory = Union[Callable[..., "nn.Module"], DictConfig]
"""A swappable part (an argument named ``*_layer``): a class or ``functools.partial`` that returns the module,
or its LazyConfig ``L(cls)(...)``; the parent calls it with the arguments it injects (``dim``, ``device``, ...)."""


class ConfigInstantiationError(RuntimeError):
    """Building one config node failed.

    Attributes:
        path: dotted config path of the failing node, e.g. ``model.layer_types.H``.
        target: the node's ``_target_``.
        original: the exception the constructor (or the import) raised.
    """

    def __init__(self, path: str, target: Any, original: BaseException):
        self.path, self.target, self.original = path, target, original
        shown = path or "<root>"
        super().__init__(
            f"could not instantiate config node '{shown}' (_target_: {_target_name(target)}): "
            f"{type(original).__name__}: {original}"
        )


def _target_name(target: Any) -> str:
    if isinstance(target, str):
        return target
    return f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', target)}"


def _join(*parts: str) -> str:
    return ".".join(p for p in parts if p)


def _node_key(cfg: Any) -> str:
    if isinstance(cfg, (DictConfig, ListConfig)) and cfg._get_parent() is not None:
        return str(cfg._get_full_key(None))
    return ""


def _select_target(cfg: Any, key: str) -> Any:
    base = _node_key(cfg)
    rel = key[len(base):].lstrip(".") if base and key.startswith(base) else key
    node = OmegaConf.select(cfg, rel, default=None) if rel and isinstance(cfg, DictConfig) else cfg
    if isinstance(node, (dict, DictConfig)):
        return node.get("_target_", "?")
    return "?"


def _root_cause(exc: BaseException) -> BaseException:
    while isinstance(exc, InstantiationException) and exc.__cause__ is not None:
        exc = exc.__cause__
    return exc


def _find_ours(exc: BaseException | None) -> ConfigInstantiationError | None:
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, ConfigInstantiationError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def instantiate(cfg: Any, **overrides: Any) -> Any:
    """Build the object a config describes (``hydra.utils.instantiate``), keyword overrides merged in.

    Args:
        cfg: a LazyConfig (``DictConfig`` or dict with ``_target_``), or a list/dict of them.
        **overrides: keyword arguments that replace or add to the config's arguments.

    Raises:
        ConfigInstantiationError: naming the config path, the ``_target_`` and the original exception.
    """
    try:
        return hydra.utils.instantiate(cfg, **overrides)
    except Exception as exc:  # noqa: BLE001 - re-raised with its config path
        # hydra names the failing node by its full key from the config's root ("model" when
        # cfg is cfg.model of a loaded file); a child built inside that node's constructor
        # reports a path relative to the node.
        match = re.search(r"full_key: (\S+)", str(exc))
        key = match.group(1) if match else _node_key(cfg)
        inner = _find_ours(exc)
        if inner is not None:
            raise ConfigInstantiationError(_join(key, inner.path), inner.target, inner.original) from None
        original = _root_cause(exc)
        if isinstance(exc, InstantiationException) and original is exc:
            original = RuntimeError(str(exc).split("\nfull_key")[0])
        called = re.search(r"(?:Error in call to target|Error locating target) '([^']+)'", str(exc))
        target = called.group(1) if called else _select_target(cfg, key)
        raise ConfigInstantiationError(key, target, original) from None


def build(spec: ModuleFactory | None, **kwargs: Any) -> Any:
    """Build a child part from a config or a factory, injecting arguments the parent knows.

    ``spec`` is a LazyConfig (instantiated with ``kwargs`` merged in), or any callable (called with
    ``kwargs``: a class, or ``functools.partial(Attention, num_heads=6)``). ``None`` stays ``None``.
    """
    if spec is None:
        return None
    if is_lazy(spec):
        return instantiate(spec, **kwargs)
    if callable(spec):
        return spec(**kwargs)
    raise TypeError(f"expected a LazyConfig or a callable, got {type(spec).__name__}: {spec!r}")
