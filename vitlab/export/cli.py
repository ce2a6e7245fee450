"""``vitlab export`` moved to :mod:`vitlab.cli.export`; its names here raise an ImportError naming the new
place, for one release."""

from vitlab._moved import moved

__getattr__ = moved(__name__, {"add_arguments": "vitlab.cli.export.add_arguments", "run": "vitlab.cli.export.run"})
