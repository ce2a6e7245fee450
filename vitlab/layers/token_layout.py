"""The token layout ``[patches (h*w), CLS (0/1), registers (R), padding (P)]`` (ViT-5's layout).

Patches come first so they fill whole rows of the ``h x w`` grid; CLS and registers follow, and
``P = (-(h*w + cls + R)) % w`` zero tokens pad the sequence to whole rows, so a 2D mixer can view
all ``T = h*w + cls + R + P`` tokens as a ``(T / w) x w`` grid. Blocks that do not need the grid
(attention) see the sequence with the padding stripped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

__all__ = ["TokenLayout"]


@dataclass
class TokenLayout:
    """Where every kind of token sits, for one forward pass.

    Attributes:
        grid_h, grid_w: the patch grid.
        num_cls: 0 or 1.
        num_registers: R.
        cache: per-forward memo for tables shared by blocks (e.g. RoPE sin/cos).
    """

    grid_h: int
    grid_w: int
    num_cls: int
    num_registers: int
    cache: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def num_patches(self) -> int:
        return self.grid_h * self.grid_w

    @property
    def register_start(self) -> int:
        return self.num_patches + self.num_cls

    @property
    def num_tokens(self) -> int:
        """Tokens without padding (what attention blocks see)."""
        return self.num_patches + self.num_cls + self.num_registers

    @property
    def num_padding(self) -> int:
        return -self.num_tokens % self.grid_w

    @property
    def num_padded_tokens(self) -> int:
        """Tokens with padding: a whole number of grid rows."""
        return self.num_tokens + self.num_padding

    def cached(self, key: Any, compute: Callable[[], Any]) -> Any:
        """``compute()`` once per forward pass for each ``key``."""
        if key not in self.cache:
            self.cache[key] = compute()
        return self.cache[key]
