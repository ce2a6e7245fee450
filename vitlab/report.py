"""The one ending of every benchmark tool: print its markdown report, and write it to ``--out`` if given."""

from __future__ import annotations

from pathlib import Path

__all__ = ["emit_report"]


def emit_report(report: str, out: str | Path | None) -> None:
    """Print ``report`` and, when ``out`` is set, write it there (folders created, one final newline)."""
    text = report.rstrip("\n") + "\n"
    print(text, end="")
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text)
