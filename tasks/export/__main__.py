"""`python -m tasks.export ...` (see tasks/export/cli.py)."""

import sys

from tasks.export.cli import main

sys.exit(main())
