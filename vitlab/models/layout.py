"""The token layout moved below the mixers, which read it: :mod:`vitlab.layers.token_layout`.

``vitlab.models.TokenLayout`` and ``vitlab.models.layout.TokenLayout`` name the same class.
"""

from vitlab.layers.token_layout import TokenLayout

__all__ = ["TokenLayout"]
