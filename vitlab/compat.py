"""Old names that keep working for one release (issue 32): a renamed keyword argument or attribute warns
with a ``FutureWarning`` that names its new name, then does what the new name does.

Only the constructors and attributes that were renamed use this module; the next release deletes it and
its call sites. Configs follow the constructors: :func:`vitlab.config.load_config` renames an old key of a
LazyConfig node (``model.block_cfg`` -> ``model.block_layer``), and an override that spells the old key
(``model.block_cfg.mixer_layer.num_heads=6``) sets the new one, both with the same warning.
"""

from __future__ import annotations

import functools
import inspect
import warnings
from typing import Any, Callable, TypeVar

__all__ = ["renamed_kwargs", "renamed_args_of", "RenamedAttribute", "keyword_only", "warn_renamed"]

F = TypeVar("F", bound=Callable[..., Any])


def warn_renamed(old: str, new: str, where: str, stacklevel: int = 3) -> None:
    """The one warning of a renamed name: ``where: 'old' is now 'new'``."""
    warnings.warn(f"{where}: '{old}' is now '{new}'; the old name goes in the next release",
                  FutureWarning, stacklevel=stacklevel)


def renamed_kwargs(**renames: str) -> Callable[[F], F]:
    """Decorate a function or an ``__init__`` whose keyword ``old`` is now ``new``:
    ``@renamed_kwargs(norm_cfg="norm_layer")``.

    A call with the old keyword warns and passes its value as the new one; a call with both raises
    ``TypeError``. ``inspect.signature`` shows the new names only, so config checks see those.
    """

    def decorate(fn: F) -> F:
        owner = fn.__qualname__.removesuffix(".__init__")

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            for old, new in renames.items():
                if old in kwargs:
                    if new in kwargs:
                        raise TypeError(f"{owner}() got '{old}' and its new name '{new}'; pass '{new}' only")
                    warn_renamed(old, new, f"{owner}()")
                    kwargs[new] = kwargs.pop(old)
            return fn(*args, **kwargs)

        wrapper.renamed_kwargs = dict(renames)
        return wrapper  # type: ignore[return-value]

    return decorate


def renamed_args_of(target: Any) -> dict[str, str]:
    """The old -> new keyword names that ``target`` (a class or a function) still accepts; empty if none."""
    fn = target.__init__ if isinstance(target, type) else target
    return dict(getattr(fn, "renamed_kwargs", {}))


def keyword_only(fn: F) -> F:
    """Decorate a method whose arguments became keyword-only: a positional call raises ``TypeError`` naming
    the keywords it meant, in their old order (``flop_count(False, 224)``: ``flop_count(inference=False,
    image_size=224)``), where Python's own error would only count the arguments."""
    names = [p.name for p in inspect.signature(fn).parameters.values() if p.kind is p.KEYWORD_ONLY]

    @functools.wraps(fn)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        if args:
            meant = ", ".join(f"{name}={value!r}" for name, value in zip(names, args))
            raise TypeError(f"{fn.__qualname__}() takes keyword arguments only ({', '.join(names)}); "
                            f"write {fn.__name__}({meant})")
        return fn(self, **kwargs)

    return wrapper  # type: ignore[return-value]


class RenamedAttribute:
    """A class attribute ``old = RenamedAttribute("new")``: reading or setting ``obj.old`` warns and reads or
    sets ``obj.new``."""

    def __init__(self, new: str):
        self.new = new

    def __set_name__(self, owner: type, name: str) -> None:
        self.old, self.where = name, f"{owner.__name__}.{name}"

    def __get__(self, obj: Any, objtype: type | None = None) -> Any:
        if obj is None:
            return self
        warn_renamed(self.old, self.new, self.where)
        return getattr(obj, self.new)

    def __set__(self, obj: Any, value: Any) -> None:
        warn_renamed(self.old, self.new, self.where)
        setattr(obj, self.new, value)
