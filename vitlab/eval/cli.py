"""``vitlab eval`` moved to :mod:`vitlab.cli.eval` (evaluation imports no command and no engine); its names
here raise an ImportError naming the new place, for one release."""

from vitlab._moved import moved

__getattr__ = moved(__name__, {name: f"vitlab.cli.eval.{name}" for name in ("add_arguments", "run", "run_seg",
                                                                             "seg_outputs")})
