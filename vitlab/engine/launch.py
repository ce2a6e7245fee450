"""``vitlab train`` moved to :mod:`vitlab.cli.train` (the engine imports no command); its names here raise
an ImportError naming the new place, for one release."""

from vitlab._moved import moved

__getattr__ = moved(__name__, {"add_arguments": "vitlab.cli.train.add_arguments", "run": "vitlab.cli.train.run"})
