"""The ingest tasks' side of the duplicate check (tasks/writers/seen.py does the Redis part).

`write_new` writes only the parts that still hold records after the check (a batch whose
records were all stored before, the other feeder's copy, costs no state, history or breaker
round trip); `stored_marks` picks the parts whose writes really stored their records, the only
ones whose identities may be marked: not parked history (MongoDB has not got it yet), not a
part whose state write failed (the other copy must still be able to write it).
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import Counter

from tasks.writers.seen import Marks, Parts

DROPPED = Counter(
    "okx_ingest_duplicates_dropped_total",
    "Records dropped before any write: the same record was already stored (the other "
    "redundant feeder's copy, or a redelivered batch)",
    ["kind"],
)


def write_new(write: Callable[[Parts], list[dict]], parts: Parts) -> list[dict[str, int]]:
    """`write` the parts that hold records; an empty part's counts are all zero."""
    todo = [(kind, records) for kind, records in parts if records]
    results = iter(write(todo) if todo else [])
    return [next(results) if records else {"records": 0} for _kind, records in parts]


def stored_marks(marks: Marks, results: list[dict[str, int]]) -> Marks:
    return [m for m, r in zip(marks, results) if not r.get("parked") and not r.get("state_failed")]


def count_dropped(kind: str, n: int, per_kind: dict[str, int]) -> None:
    if n:
        DROPPED.labels(kind).inc(n)
        per_kind["dropped"] = per_kind.get("dropped", 0) + n
