"""``python -m vitlab.cli ...``: the ``vitlab`` command (as ``python -m vitlab ...``)."""

import sys

from vitlab.cli import main

sys.exit(main())
