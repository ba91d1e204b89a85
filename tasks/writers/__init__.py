"""Idempotent writers, shared by the ingest tasks and (later) backfill.

Plain functions and classes that take their clients as arguments:

* `mongo_history.write_history(db, kind, records)`: history documents, insert-only, natural `_id`.
* `redis_state.RedisState(client, settings).write(kind, records)`: versioned current state.
* `Store`: both, in the order MongoDB then Redis, for one batch of checked records.
"""

from __future__ import annotations

from typing import Any

from core.settings import WorkerSettings as Settings
from tasks.derive.dirty import mark_trades
from tasks.writers.mongo_history import Written, insert_history, write_history
from tasks.writers.redis_state import RedisState

# Kinds that only backfill writes and that have no current state in Redis.
HISTORY_ONLY_KINDS = ("fills",)

__all__ = [
    "Store",
    "HISTORY_ONLY_KINDS",
    "RedisState",
    "Written",
    "insert_history",
    "write_history",
]


class Store:
    """History (MongoDB database handle `db`) plus state (redis client) for checked records.

    Redis state first, then MongoDB history. Both are idempotent and a failed batch is retried
    whole, so the order only decides what a reader may briefly see, and state first is the
    better choice: the current state is the latency-sensitive product (bench/e2e.py measures
    exchange time -> Redis state), it no longer waits behind MongoDB's round trips, and during
    a MongoDB outage it stays current (each retry writes it again, versioned) while history
    waits for the retries to get through.
    """

    def __init__(self, db: Any, redis_client: Any, settings: Settings):
        self.db = db
        self.state = RedisState(redis_client, settings)
        self.settings = settings

    def write(
        self, kind: str, records: list[dict], *, source: str = "ws", validated: bool = False
    ) -> dict[str, int]:
        return self.write_many([(kind, records)], validated=validated)[0]

    def write_many(
        self, parts: list[tuple[str, list[dict]]], *, validated: bool = False
    ) -> list[dict[str, int]]:
        """Several (kind, records) parts: every part's state in one Redis round trip, then
        history per kind. One count dict per part."""
        # A trade is `validated` once REST (backfill/audit) confirmed it; the live feed never
        # does. Backfill passes validated=True for the trades it fetched from REST.
        states = self.state.write_many(
            [(kind, records if kind not in HISTORY_ONLY_KINDS else []) for kind, records in parts]
        )
        hists = [
            write_history(
                self.db,
                kind,
                records,
                validated=validated,
                books_sample_ms=self.settings.books_sample_ms,
            )
            for kind, records in parts
        ]
        # candles and VWAP of these minutes are rebuilt from the stored trades (tasks/derive)
        mark_trades(self.state.client, [r for kind, rs in parts if kind == "trades" for r in rs])
        return [
            {
                "records": len(records),
                "inserted": hist.inserted,
                "duplicates": hist.duplicates,
                "state_applied": state["applied"],
                "state_stale": state["stale"],
            }
            for (_kind, records), hist, state in zip(parts, hists, states)
        ]
