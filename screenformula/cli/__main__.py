"""Run the command line: ``python -m screenformula.cli``."""

import sys

from screenformula.cli import main

sys.exit(main())
