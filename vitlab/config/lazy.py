"""`L(cls)(**kwargs)`: a config that says "call cls with these keyword arguments".

A LazyConfig (detectron2's name) is an omegaconf ``DictConfig`` whose ``_target_`` is the import path
of a real class or function. ``instantiate`` (hydra underneath) turns it into the object; until then
it is plain data that can be edited, overridden from the command line and saved as YAML.

Classes that build some of their children themselves (because they inject arguments such as ``dim``
or a per-layer ``drop_path_rate``) list those constructor arguments in ``CONFIG_ARGS``; their configs
get ``_recursive_: False`` so hydra hands those children over as configs, not objects.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

from omegaconf import DictConfig

__all__ = ["L", "import_path", "is_lazy"]


def import_path(target: Callable) -> str | None:
    """The dotted path that imports ``target`` back, or None if it cannot be imported by name."""
    module, qualname = getattr(target, "__module__", None), getattr(target, "__qualname__", None)
    if module is None or qualname is None or "<locals>" in qualname or module == "__main__":
        return None
    try:
        obj = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError):
        return None
    return f"{module}.{qualname}" if obj is target else None


def _to_node(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_to_node(v) for v in value]
    if isinstance(value, list):
        return [_to_node(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(_to_node(v) for v in value)
    if isinstance(value, dict) and not isinstance(value, DictConfig):
        return {k: _to_node(v) for k, v in value.items()}
    return value


def L(target: Callable) -> Callable[..., DictConfig]:
    """Wrap a class or function so that calling it returns its config instead of an object.

    ``L(HybridViT)(dim=384, ...)`` is a ``DictConfig`` with ``_target_`` set to
    ``"vitlab.models.vit.HybridViT"``; ``instantiate`` of it is exactly ``HybridViT(dim=384, ...)``.
    A class that cannot be imported by name (defined inside a function) is stored as the object itself:
    such a config instantiates, but cannot be saved as YAML.
    """
    if not callable(target):
        raise TypeError(f"L() takes a class or function, got {target!r}")

    def make(**kwargs: Any) -> DictConfig:
        path = import_path(target)
        content = {"_target_": path if path is not None else target}
        if getattr(target, "CONFIG_ARGS", ()):
            content["_recursive_"] = False
        content.update({k: _to_node(v) for k, v in kwargs.items()})
        return DictConfig(content, flags={"allow_objects": path is None or None})

    make.__name__ = f"L({getattr(target, '__name__', target)})"
    return make


def is_lazy(node: Any) -> bool:
    """True for a config node that describes an object (has a ``_target_``)."""
    return isinstance(node, (dict, DictConfig)) and "_target_" in node
