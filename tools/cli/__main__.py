"""`python -m tools.cli` runs the `retrain` command (what the tests call when the entry point is not installed)."""

import sys

from tools.cli import main

sys.exit(main())
