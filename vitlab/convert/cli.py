"""``vitlab convert`` moved to :mod:`vitlab.cli.convert`; its names here raise an ImportError naming the new
place, for one release."""

from vitlab._moved import moved

__getattr__ = moved(__name__, {name: f"vitlab.cli.convert.{name}" for name in ("add_arguments", "run",
                                                                                "consolidate")})
