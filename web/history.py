"""Paged range reads over MongoDB history: filters built purely, one thin reader runs them.

Every history collection carries `dt`, a BSON datetime (ms) of the record's exchange time, with
an (instId, dt)-shaped index (tasks/writers/indexes.py). A page is sorted by (dt, _id). After a
cursor the next page is read by two plain queries instead of one `$or`, which every MongoDB
speaks and which each walk one index range:

    1. the rest of the last page's millisecond:  dt == last, _id > last_id   (sort _id)
    2. then the later ones:                      last < dt < end             (sort dt, _id)

so trades sharing a timestamp are never skipped nor repeated, however the pages fall. When the
document read beyond the page (to know whether there is a next one) is in a later millisecond,
the cursor says so (an empty _id) and the next page is the second query alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from web.paging import Position
from web.params import MAX_MS, TimeRange

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_MS = timedelta(milliseconds=1)
Query = tuple[dict[str, Any], list[tuple[str, int]]]  # (filter, sort)


def ms_to_dt(ms: int) -> datetime:
    return EPOCH + ms * ONE_MS


def dt_to_ms(value: Any) -> int:
    """A stored `dt` as ms; pymongo and mongomock hand back naive datetimes in UTC."""
    if not isinstance(value, datetime):
        raise TypeError(f"dt is {type(value).__name__}, not a datetime")
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - EPOCH) // ONE_MS


def _window(rng: TimeRange, after: Position | None) -> dict[str, Any]:
    cond: dict[str, Any] = {}
    if after is not None:
        cond["$gt"] = ms_to_dt(after.key)
    elif rng.start_ms > 0:
        cond["$gte"] = ms_to_dt(rng.start_ms)
    if rng.end_ms <= MAX_MS:
        cond["$lt"] = ms_to_dt(rng.end_ms)
    return cond


def page_queries(
    base: Mapping[str, Any], rng: TimeRange, after: Position | None, field: str = "dt"
) -> list[Query]:
    """The queries that read one page, in order (read each until the page is full)."""
    queries: list[Query] = []
    if after is not None and after.id:  # id "": nothing more in that millisecond (read_page)
        same_ms = {**base, field: ms_to_dt(after.key), "_id": {"$gt": after.id}}
        queries.append((same_ms, [("_id", 1)]))
    window = _window(rng, after)
    later = {**base, field: window} if window else dict(base)
    queries.append((later, [(field, 1), ("_id", 1)]))
    return queries


def read_page(
    coll: Any,
    base: Mapping[str, Any],
    rng: TimeRange,
    after: Position | None,
    limit: int,
    *,
    field: str = "dt",
    projection: Mapping[str, Any] | None = None,
) -> tuple[list[dict[str, Any]], Position | None]:
    """Up to `limit` documents of the range after `after`, and the position to continue from
    (None when the range is exhausted). Reads one document more than it returns, to know."""
    docs: list[dict[str, Any]] = []
    want = limit + 1
    for flt, sort in page_queries(base, rng, after, field):
        found = coll.find(flt, projection).sort(sort).limit(want - len(docs))
        docs.extend(found)
        if len(docs) >= want:
            break
    if len(docs) <= limit:
        return docs, None
    last_ms = dt_to_ms(docs[limit - 1][field])
    if dt_to_ms(docs[limit][field]) != last_ms:
        # the look-ahead is in a later millisecond: the next page needs only the second query
        return docs[:limit], Position(last_ms, "")
    return docs[:limit], Position(last_ms, str(docs[limit - 1]["_id"]))


def newest_before(
    coll: Any, base: Mapping[str, Any], at_ms: int, field: str = "dt"
) -> dict[str, Any] | None:
    """The last document at or before `at_ms` (an "as of" read)."""
    flt = {**base, field: {"$lte": ms_to_dt(at_ms)}}
    found = list(coll.find(flt).sort([(field, -1), ("_id", -1)]).limit(1))
    return found[0] if found else None


def first_and_last_ms(
    coll: Any, base: Mapping[str, Any], field: str = "dt"
) -> tuple[int | None, int | None]:
    """The times of the oldest and newest stored documents matching `base` (two index reads)."""
    ends = []
    for direction in (1, -1):
        found = list(coll.find(base, {field: 1}).sort([(field, direction)]).limit(1))
        ends.append(dt_to_ms(found[0][field]) if found and found[0].get(field) else None)
    return ends[0], ends[1]


def public(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A stored document as the API shows it: OKX's fields, without the storage's `_id`/`dt`."""
    return {k: v for k, v in doc.items() if k not in ("_id", "dt")}
