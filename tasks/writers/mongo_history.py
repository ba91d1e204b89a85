"""MongoDB history writer: batch inserts keyed by the natural `_id`.

`insert_many(ordered=False)` writes every new document of a batch in one round trip and reports
the ones that already exist as duplicate-key errors (code 11000); those count as success, since a
redelivered batch is expected. Any other write error is re-raised: the task decides whether to
retry or dead-letter. History is insert-only (no UpdateOne in bulk_write, which mongomock 4.3
cannot run on pymongo >= 4.10).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pymongo.errors import BulkWriteError

from core import keys
from tasks import documents
from tasks.writers.indexes import RETIRED, indexes

DUPLICATE_KEY = 11000


@dataclass
class Written:
    inserted: int = 0
    duplicates: int = 0

    def __iadd__(self, other: Written) -> Written:
        self.inserted += other.inserted
        self.duplicates += other.duplicates
        return self


def insert_history(collection: Any, docs: list[dict]) -> Written:
    """Insert `docs`; existing `_id`s count as duplicates; other errors propagate."""
    if not docs:
        return Written()
    try:
        result = collection.insert_many(docs, ordered=False)
        return Written(inserted=len(result.inserted_ids))
    except BulkWriteError as exc:
        details = exc.details or {}
        errors = details.get("writeErrors", [])
        others = [e for e in errors if e.get("code") != DUPLICATE_KEY]
        if others or details.get("writeConcernErrors"):
            raise
        return Written(
            inserted=details.get("nInserted", len(docs) - len(errors)), duplicates=len(errors)
        )


def write_history(
    db: Any,
    kind: str,
    records: Iterable[dict],
    *,
    validated: bool = False,
    books_sample_ms: int = 0,
) -> Written:
    """Store checked records of `kind` in their collection (database handle `db`)."""
    docs = documents.mongo_docs(kind, records, validated=validated, books_sample_ms=books_sample_ms)
    return insert_history(db[keys.COLLECTION_BY_KIND[kind]], docs)


def mark_trades_validated(db: Any, inst_id: str, trade_ids: Iterable[str]) -> int:
    """For backfill/audit: flag stored trades as confirmed by REST. Returns how many changed."""
    ids = [f"{inst_id}:{t}" for t in trade_ids]
    if not ids:
        return 0
    res = db[keys.TRADES].update_many(
        {"_id": {"$in": ids}, "validated": False}, {"$set": {"validated": True}}
    )
    return res.modified_count


def ensure_indexes(db: Any, *, books_retention_s: int = 0) -> list[str]:
    """Create every index of indexes.indexes() (idempotent). Returns 'collection.name' created
    or kept."""
    done = []
    for coll, retired in RETIRED.items():
        for name, info in db[coll].index_information().items():
            if [(k, int(d)) for k, d in info["key"]] in retired:
                db[coll].drop_index(name)
    for coll, models in indexes(books_retention_s).items():
        db[coll].create_indexes(models)
        done += [f"{coll}.{m.document['name']}" for m in models]
    return done
