"""`python -m mongo_backup_demo` (what `make demo` runs)."""

import sys

from .demo import run_demo

sys.exit(run_demo())
