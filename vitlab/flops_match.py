"""Equal-FLOPs controls: the value of some config keys (FFN ratio, width, depth) at which one model's
forward costs what another's does, within a tolerance (0.5%): ``vitlab flops CONFIG --match OTHER --vary KEY``.

The search assumes the FLOPs grow with the key's value (they do for an FFN ratio, a width, a depth) and
checks it as it goes. Integer keys move on the integers (or multiples of ``step``); values the model rejects
(a width its heads do not divide) are skipped. Float keys move on a grid of ``step`` (default 0.1, the
precision a preset writes), or, with ``step=0``, exactly: bisection to the boundary of the FLOPs' integer
steps, reported with the fewest decimals that cost the same. Several keys are tied: they take one common
value (the FFN ratio of every block type, say); vary two knobs independently by fixing one with an override.
Depth (``model.num_blocks``) carries a ``layer_pattern`` along: the pattern's repeating unit is repeated
to the new depth (``"HR" * 2`` -> ``"HR" * 3``), and depths the unit does not divide are skipped.
"""

from __future__ import annotations

import copy
import inspect
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from omegaconf import DictConfig, OmegaConf

from vitlab._moved import moved
from vitlab.config import (ConfigInstantiationError, UnknownKeyError, apply_overrides, instantiate, load_config,
                           renamed_key)
from vitlab.config.overrides import unknown_key_message
from vitlab.flops import per_image

__all__ = ["FlopsMatch", "match_flops", "forward_flops", "DEFAULT_TOLERANCE"]

DEFAULT_TOLERANCE = 0.005  # the equal-FLOPs controls' bound (tests/test_equal_flops_controls.py)
_MAX_DOUBLINGS = 40


@dataclass
class FlopsMatch:
    """The value found for ``keys`` and what the two models cost at ``image_size`` (forward, per image)."""

    keys: list[str]
    value: int | float
    overrides: list[str]  # the override line's items: ``key=value`` per tied key (and a depth's layer_pattern)
    flops: int
    target_flops: int
    image_size: tuple[int, int]

    @property
    def relative_difference(self) -> float:
        return self.flops / self.target_flops - 1


def forward_flops(model_cfg: Any, image_size: Sequence[int] | None = None, batch_size: int = 1) -> int:
    """Forward FLOPs per image of the model a ``model`` config builds (on the meta device: no weights)."""
    report = per_image(instantiate(model_cfg, device="meta").flop_report(image_size, batch_size))
    return sum(part["flops"] for part in (report["stem"], report["head"], *report["layers"]))


def match_flops(cfg: DictConfig | str | Path, other_cfg: DictConfig | str | Path, vary: Sequence[str], *,
                image_size: int | Sequence[int] | None = None, step: float | None = None,
                tolerance: float = DEFAULT_TOLERANCE, batch_size: int = 1) -> FlopsMatch:
    """The value of the ``vary`` keys of ``cfg`` whose forward FLOPs come closest to ``other_cfg``'s.

    Args:
        cfg, other_cfg: configs defining ``model`` (loaded, or paths to load).
        vary: full keys of ``cfg`` (``model.layer_types.R.ffn_layer.ratio``), tied to one value, all integers or all floats.
        image_size: H, W (or one int) at which both are counted; default the target model's ``image_size``.
        step: grid of the search: default 1 for integer keys, 0.1 for floats; 0 searches floats exactly.
        tolerance: largest accepted ``|flops / target - 1|``.
        batch_size: count per image within a batch of this size (Hyena picks its algorithm by batch).

    Raises:
        ValueError: no value comes within ``tolerance`` (naming the keys, the closest value and its
            difference), a key is not a number, or the FLOPs fall as the value grows.
        UnknownKeyError: a misspelt key (with the closest existing keys).
    """
    cfg = load_config(cfg) if isinstance(cfg, (str, Path)) else cfg
    other_cfg = load_config(other_cfg) if isinstance(other_cfg, (str, Path)) else other_cfg
    vary = [renamed_key(cfg, key) for key in vary]  # a key an older vitlab spelt (vitlab.compat)
    if not vary:
        raise ValueError("match_flops needs at least one key to vary (vary=[...], --vary KEY)")
    for name, c in (("cfg", cfg), ("other_cfg", other_cfg)):
        if "model" not in c:
            raise ValueError(f"match_flops: {name} defines no `model`")
    if image_size is None:
        image_size = instantiate(other_cfg.model, device="meta").image_size
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(int(s) for s in image_size)
    target = forward_flops(other_cfg.model, size, batch_size)

    start = _current_value(cfg, vary[0])
    integer = isinstance(start, int)
    for key in vary[1:]:
        if isinstance(_current_value(cfg, key), int) != integer:
            raise ValueError(f"the --vary keys are tied to one value, so they need one type: {vary[0]} is "
                             f"{type(start).__name__}, {key} is not")
    if step is None:
        step = 1 if integer else 0.1
    if integer and step >= 1 and step == int(step):
        step = int(step)  # the command line's 64.0
    if step < 0 or (integer and (not isinstance(step, int) or step < 1)):
        raise ValueError(f"step must be a positive integer for integer keys, >= 0 for float keys; got step={step!r} "
                         f"for {vary[0]} ({type(start).__name__})")

    def flops(value) -> int | None:
        trial, line = copy.deepcopy(cfg), _overrides(cfg, vary, value)
        if line is None:
            return None
        apply_overrides(trial, line)
        try:
            return forward_flops(trial.model, size, batch_size)
        except Exception as exc:
            if _is_config_error(exc):  # a value the model rejects: skipped
                return None
            raise

    if step == 0:
        value = _bisect_exact(flops, float(start), target, vary)
    else:
        scale = (lambda n: n * step) if integer else (lambda n: float(round(n * step, 10)))  # noqa: E731
        value = scale(_search_grid(lambda n: flops(scale(n)), max(1, round(start / step)), target, vary, scale))
    found = FlopsMatch(keys=vary, value=value, overrides=_overrides(cfg, vary, value), flops=flops(value),
                       target_flops=target, image_size=size)
    if abs(found.relative_difference) > tolerance:
        hint = "a finer --step, or --step 0 (exact)" if not integer else "a finer-grained key (an FFN ratio)"
        raise ValueError(f"no value of {', '.join(vary)} brings the forward FLOPs within {tolerance:.1%} of the "
                         f"target's {target:,} at {size[0]}x{size[1]}: the closest, {' '.join(found.overrides)}, "
                         f"gives {found.flops:,} ({found.relative_difference:+.2%}); try {hint}")
    return found


def _overrides(cfg: DictConfig, keys: list[str], value: int | float) -> list[str] | None:
    """The override line setting ``keys`` to ``value``; None for a depth the layer pattern's unit does not divide."""
    line = [f"{key}={value!r}" for key in keys]
    pattern = OmegaConf.select(cfg, "model.layer_pattern", default=None)
    if "model.num_blocks" in keys and isinstance(pattern, str) and pattern:
        unit = next(pattern[:n] for n in range(1, len(pattern) + 1) if pattern[:n] * (len(pattern) // n) == pattern)
        if value % len(unit):
            return None
        line.append(f"model.layer_pattern={unit * (value // len(unit))}")
    return line


def _current_value(cfg: DictConfig, key: str) -> int | float:
    """The key's value in the config, or its constructor's default when the config leaves it out."""
    value = OmegaConf.select(cfg, key, default=None)
    if value is None:
        parent_key, _, leaf = key.rpartition(".")
        parent = OmegaConf.select(cfg, parent_key, default=None) if parent_key else None
        value = _default(parent, leaf)
        if value is None:
            raise UnknownKeyError(unknown_key_message(cfg, key))
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"--vary {key}: its value {value!r} is not a number (vary an FFN ratio, a width, a depth)")
    return value


def _default(node: Any, leaf: str) -> Any:
    """Default of constructor argument ``leaf`` of a LazyConfig node (None if there is none)."""
    if not isinstance(node, DictConfig) or "_target_" not in node:
        return None
    from hydra.utils import get_object

    target = node._target_
    param = inspect.signature(get_object(target) if isinstance(target, str) else target).parameters.get(leaf)
    return None if param is None or param.default is inspect.Parameter.empty else param.default


def _is_config_error(exc: BaseException) -> bool:
    """An instantiation the model rejects (e.g. a width its heads do not divide): a value to skip."""
    return isinstance(exc, (ConfigInstantiationError, ValueError))


def _search_grid(flops: Callable[[int], int | None], n0: int, target: int, keys: list[str],
                 scale: Callable[[int], Any]) -> int:
    """The grid index ``n >= 1`` whose FLOPs are closest to ``target``, for FLOPs non-decreasing in ``n``;
    ``flops(n)`` is None where the model rejects the value."""
    cache: dict[int, int | None] = {}

    def f(n: int) -> int | None:
        if n not in cache:
            cache[n] = flops(n)
        return cache[n]

    def valid(n: int, low: int, high: int) -> int | None:
        """The valid index in ``[low, high]`` nearest to ``n`` (None if there is none within 64 of it)."""
        for d in range(min(high - low + 1, 65)):
            for m in (n + d, n - d):
                if low <= m <= high and f(m) is not None:
                    return m
        return None

    def rising(a: int, b: int) -> None:
        """The search's premise, checked at every step out: ``a < b`` costs no more than ``b``."""
        if f(a) > f(b):
            raise ValueError(f"the forward FLOPs fall as {', '.join(keys)} grows ({scale(a)}: {f(a):,}, {scale(b)}: "
                             f"{f(b):,}); --vary needs a key the FLOPs grow with")

    def closest(*ns: int) -> int:
        # the current value wins a tie: a key the FLOPs do not depend on stays where it is
        return min((*ns, n0), key=lambda n: (abs(f(n) - target), abs(n - n0)))

    n0 = valid(n0, 1, n0 + 64)
    if n0 is None:
        raise ValueError(f"the model rejects every value of {', '.join(keys)} near its current one")
    lo = hi = None
    if f(n0) < target:  # grow until the FLOPs reach the target
        lo = n0
        for i in range(_MAX_DOUBLINGS):
            n = valid(n0 + 2**i, n0 + 2**i, n0 + 2 ** (i + 1))
            if n is not None:
                rising(lo, n)
            if n is not None and f(n) >= target:
                hi = n
                break
            lo = n if n is not None else lo
        if hi is None:
            return closest(lo)
    else:  # shrink until they fall below it
        hi = n0
        for i in range(_MAX_DOUBLINGS):
            n = valid(max(n0 - 2**i, 1), max(n0 - 2 ** (i + 1), 1), n0 - 1)
            if n is None:
                return closest(hi)  # the smallest valid value is still at or above the target
            rising(n, hi)
            if f(n) < target:
                lo = n
                break
            hi = n
        if lo is None:
            return closest(hi)
    while hi - lo > 1:  # invariant: f(lo) < target <= f(hi)
        mid = valid((lo + hi) // 2, lo + 1, hi - 1)
        if mid is None:
            break
        if f(mid) < target:
            lo = mid
        else:
            hi = mid
    return closest(lo, hi)


def _bisect_exact(flops: Callable[[float], int | None], v0: float, target: int, keys: list[str]) -> float:
    """The float value closest to ``target`` by bisection, shown with the fewest decimals that cost the same."""
    def f(v: float) -> int:
        out = flops(v)
        if out is None:
            raise ValueError(f"the model rejects {', '.join(keys)}={v!r}")
        return out

    lo, hi = v0, v0
    for _ in range(_MAX_DOUBLINGS):
        if f(hi) >= target:
            break
        lo, hi = hi, hi * 2
    for _ in range(_MAX_DOUBLINGS):
        if f(lo) < target:
            break
        hi, lo = lo, lo / 2
    for _ in range(60):
        if hi - lo <= 1e-9 * hi:
            break
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if f(mid) < target else (lo, mid)
    best = min((lo, hi), key=lambda v: abs(f(v) - target))
    for digits in range(1, 10):  # the value with the fewest decimals on best's side of the FLOPs' step
        for short in (math.floor(best * 10**digits), math.ceil(best * 10**digits)):
            short = round(short / 10**digits, digits)
            if short > 0 and f(short) == f(best):
                return short
    return best


# the command line's printout of a match: :mod:`vitlab.cli.flops` (an error naming it, for one release)
__getattr__ = moved(__name__, {"run_match": "vitlab.cli.flops.run_match"})
