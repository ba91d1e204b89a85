"""MongoDB I/O of the derive task: read stored trades and candles, write what changed.

Writes follow one read of the documents already there: new ones in one insert_many, changed
ones by `replace_one` each (no bulk UpdateOne: mongomock 4.3 cannot run it on pymongo >= 4.10),
unchanged ones not at all, so a rebuild that changes nothing writes nothing, and running it
twice is harmless.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pymongo import ASCENDING, DESCENDING, ReplaceOne
from pymongo.collection import Collection
from pymongo.errors import BulkWriteError

from core import keys
from tasks import documents
from tasks.derive.ohlcv import SOURCE

DUPLICATE_KEY = 11000
TRADE_FIELDS = {"_id": 0, "tradeId": 1, "px": 1, "sz": 1, "ts": 1, "validated": 1}


def _dt(ms: int) -> Any:
    return documents.to_datetime(str(ms))


def trades_between(db: Any, inst_id: str, start_ms: int, end_ms: int) -> list[dict]:
    """Stored trades of `inst_id` with start_ms <= ts < end_ms."""
    query = {"instId": inst_id, "dt": {"$gte": _dt(start_ms), "$lt": _dt(end_ms)}}
    return list(db[keys.TRADES].find(query, TRADE_FIELDS))


def _insts(inst_ids: str | list[str]) -> Any:
    return inst_ids if isinstance(inst_ids, str) else {"$in": sorted(inst_ids)}


def trades_of(db: Any, inst_ids: list[str], start_ms: int, end_ms: int) -> list[dict]:
    """Stored trades of several instruments with start_ms <= ts < end_ms (one query)."""
    query = {"instId": _insts(inst_ids), "dt": {"$gte": _dt(start_ms), "$lt": _dt(end_ms)}}
    return list(db[keys.TRADES].find(query, {**TRADE_FIELDS, "instId": 1}))


def first_trade_ms(db: Any, inst_id: str) -> int | None:
    doc = db[keys.TRADES].find_one(
        {"instId": inst_id}, {"ts": 1, "_id": 0}, sort=[("dt", ASCENDING)]
    )
    return int(doc["ts"]) if doc else None


def trade_candles(
    db: Any, inst_id: str | list[str], bar: str | list[str], start_ms: int, end_ms: int
) -> list[dict]:
    """Stored trades candles of `bar` (or of several bars, instruments) with start_ms <= ts <
    end_ms."""
    query = {
        "instId": _insts(inst_id),
        "bar": bar if isinstance(bar, str) else {"$in": bar},
        "source": SOURCE,
        "dt": {"$gte": _dt(start_ms), "$lt": _dt(end_ms)},
    }
    return list(db[keys.CANDLES_COLLECTION].find(query))


def unfinal_candles(db: Any, inst_id: str | list[str], limit: int = 20_000) -> list[dict]:
    """Trades candles not final yet (the current bars, and incomplete ones)."""
    query = {"instId": _insts(inst_id), "source": SOURCE, "final": False}
    return list(db[keys.CANDLES_COLLECTION].find(query, limit=limit))


def vwap_between(db: Any, inst_id: str | list[str], start_ms: int, end_ms: int) -> list[dict]:
    """Stored VWAP marks with start_ms <= ts <= end_ms."""
    query = {"instId": _insts(inst_id), "ts": {"$gte": start_ms, "$lte": end_ms}}
    return list(db[keys.VWAP_COLLECTION].find(query))


def _same(a: dict, b: dict) -> bool:
    # BSON datetimes come back naive (pymongo) or aware (mongomock): compare the rest, and dt by
    # its instant only when both have one
    return all(a.get(k) == b.get(k) for k in b if k != "dt")


def write_changed(collection: Any, docs: Iterable[dict], existing: Iterable[dict]) -> int:
    """Write the `docs` that differ from `existing` (by `_id`); returns how many were written.

    New documents go in with one insert_many (one round trip; a concurrent writer's copy of the
    same `_id` is replaced instead); changed ones are replaced one by one."""
    known = {d["_id"]: d for d in existing}
    new, changed = [], []
    for doc in docs:
        old = known.get(doc["_id"])
        if old is None:
            new.append(doc)
        elif not _same(old, doc):
            changed.append(doc)
    if new:
        try:
            collection.insert_many(new, ordered=False)
        except BulkWriteError as exc:
            errors = (exc.details or {}).get("writeErrors", [])
            if any(e.get("code") != DUPLICATE_KEY for e in errors):
                raise
            changed += [new[e["index"]] for e in errors]
    if changed and isinstance(collection, Collection):
        # pymongo: one round trip for them all (a late trade rewrites five minutes of marks)
        collection.bulk_write(
            [ReplaceOne({"_id": d["_id"]}, d, upsert=True) for d in changed], ordered=False
        )
    else:
        # mongomock 4.3 cannot run bulk ReplaceOne on pymongo >= 4.10: one at a time
        for doc in changed:
            collection.replace_one({"_id": doc["_id"]}, doc, upsert=True)
    return len(new) + len(changed)


def set_flags(collection: Any, doc: dict, complete: bool, final: bool) -> None:
    """Replace the whole document rather than `$set` the two booleans: the wire-protocol test
    server (nx-27017) stores a `$set` boolean as an integer, and readers query `final: false`."""
    collection.replace_one({"_id": doc["_id"]}, {**doc, "complete": complete, "final": final})


def last_trade_ms(db: Any, inst_id: str) -> int | None:
    doc = db[keys.TRADES].find_one(
        {"instId": inst_id}, {"ts": 1, "_id": 0}, sort=[("dt", DESCENDING)]
    )
    return int(doc["ts"]) if doc else None


def latest_vwap(db: Any, inst_id: str) -> dict | None:
    return db[keys.VWAP_COLLECTION].find_one({"instId": inst_id}, sort=[("ts", DESCENDING)])
