"""Create the MongoDB indexes: `python -m tasks.migrate` (Heroku release phase).

Idempotent: existing indexes with the same definition are kept. Exits non-zero when MongoDB
cannot be reached, which aborts a Heroku deploy rather than release workers without indexes.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from core import settings
    from tasks import clients
    from tasks.writers.mongo_history import ensure_indexes

    s = settings.current()
    db = clients.mongo_client()[s.mongodb_db]
    try:
        done = ensure_indexes(db, books_retention_s=s.books_retention_s)
    except Exception as exc:  # noqa: BLE001 - reported, non-zero exit
        print(f"migrate: failed on {s.mongodb_db}: {exc!r}", file=sys.stderr)
        return 1
    print(f"migrate: {len(done)} indexes in database {s.mongodb_db!r}: {', '.join(done)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
