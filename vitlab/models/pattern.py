"""Per-layer structure of a network: the ``layer_pattern`` string and the drop-path schedule."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:
    from torch import nn

__all__ = ["parse_layer_pattern", "block_letter", "drop_path_rates", "DROP_PATH_SCHEDULES"]

DROP_PATH_SCHEDULES = ("constant", "linear")


def parse_layer_pattern(layer_pattern: str, layer_types: Mapping[str, Any], num_blocks: int) -> list[str]:
    """Check ``layer_pattern`` against ``layer_types`` and the depth; return one character per layer."""
    if not isinstance(layer_pattern, str) or not layer_pattern:
        raise ValueError(f"layer_pattern must be a non-empty string, got {layer_pattern!r}")
    if len(layer_pattern) != num_blocks:
        raise ValueError(
            f"layer_pattern {layer_pattern!r} has {len(layer_pattern)} characters but num_blocks={num_blocks}"
        )
    unknown = sorted(set(layer_pattern) - set(layer_types))
    if unknown:
        raise ValueError(
            f"layer_pattern {layer_pattern!r} uses {unknown} which layer_types does not define "
            f"(layer_types has {sorted(layer_types)})"
        )
    return list(layer_pattern)


def block_letter(block: nn.Module) -> str:
    """The letter of ``block`` in a pattern, for a network that names none (homogeneous mode): its mixer's
    ``pattern_letter``, the letter docs/models.md gives that mixer (``A`` attention, ``R`` RoPE attention,
    ``H`` Hyena 2D, ``N``, ``C``, ``S``, ``V``, ``L``), else the block's own, else ``?`` (a block type that
    has none)."""
    for part in (getattr(block, "mixer", None), block):
        letter = getattr(part, "pattern_letter", None)
        if letter:
            return letter
    return "?"


def drop_path_rates(max_rate: float, num_blocks: int, schedule: str) -> list[float]:
    """Per-layer drop-path rates: ``constant`` gives every layer ``max_rate``; ``linear`` ramps 0 -> max."""
    if schedule not in DROP_PATH_SCHEDULES:
        raise ValueError(f"drop_path_schedule must be one of {DROP_PATH_SCHEDULES}, got {schedule!r}")
    if not 0.0 <= max_rate < 1.0:
        raise ValueError(f"max_drop_path_rate must be in [0, 1), got {max_rate}")
    if schedule == "constant" or num_blocks == 1:
        return [float(max_rate)] * num_blocks
    return [max_rate * i / (num_blocks - 1) for i in range(num_blocks)]
