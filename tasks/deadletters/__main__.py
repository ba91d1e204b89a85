"""`python -m tasks.deadletters list | replay | drain` (see the package docstring)."""

import sys

from tasks.deadletters import main

sys.exit(main())
