"""``python -m vitlab ...`` (what ``torchrun -m vitlab train ...`` runs)."""

import sys

from vitlab.cli import main

sys.exit(main())
