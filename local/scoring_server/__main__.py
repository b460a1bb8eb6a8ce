"""`python -m local.scoring_server ...`: see the package docstring."""

import sys

from local.scoring_server.cli import main

sys.exit(main())
