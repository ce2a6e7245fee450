"""Public names that moved, for one release: the old name raises an ImportError that names the new one.

A module whose names moved (up the package chain, where it must not import them back) sets
``__getattr__ = moved(__name__, {"run": "vitlab.cli.sweep.run"})``: ``from vitlab.sweep import run`` and
``vitlab.sweep.run`` then both fail with ``vitlab.sweep.run moved to vitlab.cli.sweep.run``. (An
ImportError, not an AttributeError: ``from X import name`` replaces an AttributeError's message with
its own.)
"""

from __future__ import annotations

from typing import Any, Callable

__all__ = ["moved"]


def moved(module: str, names: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``module``'s moved ``names`` (old attribute -> new dotted name)."""

    def __getattr__(name: str) -> Any:
        if name in names:
            raise ImportError(f"{module}.{name} moved to {names[name]}; import it from there")
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__
