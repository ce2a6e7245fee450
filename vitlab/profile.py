"""Operator tables of a :mod:`torch.profiler` trace, for ``vitlab profile`` (:mod:`vitlab.cli.profile`): the
operators ranked by self time, and their self time summed into families (matrix products, FFTs, copies and
fills, element-wise, ...), so a report says in one line what share of a step does arithmetic and what
share moves memory.
"""

from __future__ import annotations

from vitlab._moved import moved

__all__ = ["FAMILIES", "family", "op_table"]

# operator families: the first whose names contain the operator's name wins
FAMILIES: dict[str, tuple[str, ...]] = {
    "matrix products": ("aten::addmm", "aten::mm", "aten::bmm", "aten::baddbmm", "aten::_scaled_dot_product",
                        "aten::linear"),
    "FFTs": ("aten::_fft_",),
    "convolutions": ("aten::convolution", "aten::_convolution", "aten::mkldnn_convolution",
                     "aten::_slow_conv2d", "aten::thnn_conv", "aten::conv"),
    "copies and fills": ("aten::copy_", "aten::fill_", "aten::zero_", "aten::cat", "aten::clone",
                         "aten::contiguous", "aten::index", "aten::index_select", "aten::constant_pad_nd",
                         "aten::stack", "aten::_to_copy", "aten::to", "aten::repeat", "aten::embedding"),
}


def family(name: str) -> str:
    """The operator family of a profiler event name ('other' when none matches)."""
    for fam, prefixes in FAMILIES.items():
        if any(name == p or name.startswith(p) for p in prefixes):
            return fam
    return "other"


def _self_us(event) -> float:
    return event.self_device_time_total if event.self_device_time_total else event.self_cpu_time_total


def op_table(events, *, top: int, with_shapes: bool) -> tuple[list[str], dict[str, float]]:
    """Markdown rows of the ``top`` operators by self time, and the self-time share of each family."""
    events = [e for e in events if _self_us(e) > 0]
    total = sum(_self_us(e) for e in events) or 1.0
    families: dict[str, float] = {}
    for e in events:
        families[family(e.key)] = families.get(family(e.key), 0.0) + _self_us(e) / total
    head = "| operator | input shapes | calls | self ms | share |" if with_shapes else "| operator | calls | self ms | share |"
    rows = [head, "|" + "---|" * (head.count("|") - 1)]
    for e in sorted(events, key=_self_us, reverse=True)[:top]:
        shapes = ", ".join(str(list(s)) for s in (e.input_shapes or []) if s) if with_shapes else None
        cells = [f"`{e.key}`"] + ([shapes or "-"] if with_shapes else []) + [
            str(e.count), f"{_self_us(e) / 1e3:.1f}", f"{100 * _self_us(e) / total:.1f}%"]
        rows.append("| " + " | ".join(cells) + " |")
    return rows, families


# ``vitlab profile`` itself: :mod:`vitlab.cli.profile` (the names raise an error naming it, for one release)
__getattr__ = moved(__name__, {"add_arguments": "vitlab.cli.profile.add_arguments", "run": "vitlab.cli.profile.run"})
