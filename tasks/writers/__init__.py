"""Idempotent writers, shared by the ingest tasks and (later) backfill.

Plain functions and classes that take their clients as arguments:

* `mongo_history.write_history(db, kind, records)`: history documents, insert-only, natural `_id`.
* `redis_state.RedisState(client, settings).write(kind, records)`: versioned current state.
* `Store`: both, in the order MongoDB then Redis, for one batch of checked records.
"""
from __future__ import annotations

from typing import Any

from tasks.settings import Settings
from tasks.writers.mongo_history import Written, insert_history, write_history
from tasks.writers.redis_state import RedisState

# Kinds that only backfill writes and that have no current state in Redis.
HISTORY_ONLY_KINDS = ("fills",)

__all__ = ["Store", "HISTORY_ONLY_KINDS", "RedisState", "Written", "insert_history", "write_history"]


class Store:
    """History (MongoDB database handle `db`) plus state (redis client) for checked records.

    MongoDB first: if the Redis step fails, the retried batch rewrites both, and both are
    idempotent, so the order only decides what a reader may briefly see (history before state).
    """

    def __init__(self, db: Any, redis_client: Any, settings: Settings):
        self.db = db
        self.state = RedisState(redis_client, settings)
        self.settings = settings

    def write(self, kind: str, records: list[dict], *, source: str = "ws",
              validated: bool = False) -> dict[str, int]:
        # A trade is `validated` once REST (backfill/audit) confirmed it; the live feed never
        # does. Backfill passes validated=True for the trades it fetched from REST.
        hist = write_history(self.db, kind, records, validated=validated,
                             books_sample_ms=self.settings.books_sample_ms)
        state = (self.state.write(kind, records) if kind not in HISTORY_ONLY_KINDS
                 else {"applied": 0, "stale": 0})
        return {"records": len(records), "inserted": hist.inserted, "duplicates": hist.duplicates,
                "state_applied": state["applied"], "state_stale": state["stale"]}
