"""``python -m jeancore.cli ...`` (e.g. under ``torchrun -m jeancore.cli train-audio ...``)."""

import sys

from . import main

sys.exit(main())
