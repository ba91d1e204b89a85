"""Create the MongoDB indexes: `python -m tasks.migrate` (Heroku release phase).

Idempotent: existing indexes with the same definition are kept. Exits non-zero when MongoDB
cannot be reached, which aborts a Heroku deploy rather than release workers without indexes:
1 MongoDB unreachable or refusing, 2 a setting that cannot work, each said in one line on stderr
(core/cli_errors.py, the policy of every command).
"""

from __future__ import annotations

import argparse
import sys

PROG = "python -m tasks.migrate"


def main(argv: list[str] | None = None) -> int:
    from core.cli_errors import EXIT_CODES_EPILOG, run_cli, worker_targets

    argparse.ArgumentParser(
        prog=PROG,
        description="Create the MongoDB indexes (idempotent; the Heroku release phase).",
        epilog=EXIT_CODES_EPILOG,
    ).parse_args(argv)
    return run_cli(PROG, _migrate, worker_targets)


def _migrate() -> int:
    from core import settings
    from tasks import clients
    from tasks.writers.mongo_history import ensure_indexes

    s = settings.current()
    db = clients.mongo_client()[s.mongodb_db]
    done = ensure_indexes(db, books_retention_s=s.books_retention_s)
    print(f"migrate: {len(done)} indexes in database {s.mongodb_db!r}: {', '.join(done)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
