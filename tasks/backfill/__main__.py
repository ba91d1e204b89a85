import sys

from tasks.backfill.cli import main

sys.exit(main())
