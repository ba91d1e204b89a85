"""Paging fetchers over OKX REST history, for backfill and audit.

Each fetcher is a generator of `Page`s: record payloads in the shape of core/contract.py for
their kind (OKX field names, OKX string values) and a cursor to resume after that page. The last
page has `cursor=None`. A backfill that stores each page and then saves its cursor can be killed
at any point and continue with `resume=cursor`: at worst one page is fetched (and stored,
idempotently) twice.

OKX pages newest first; `after=X` returns records strictly older than X, which is how every
fetcher here walks: from the upper end of the range down to the lower end, so both ends are
exact. The I/O is one `client.get(path, params, signed)` call per page; cursor arithmetic,
bound checks and row -> payload mapping are plain functions below the fetchers.

A hostile or broken page (rows that are not objects, missing or non-numeric ids, a page that does
not move the cursor) raises BadReply (a RestError) with the reason rather than looping or storing
junk; so does a resume cursor that is not one of ours. These are the only parsers of these
replies: the feeder's REST book snapshot and backfill's account snapshots use them too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from okx import clock
from okx.errors import BadReply, RestError  # noqa: F401 - RestError: importable from here too
from okx.records import Payload
from okx.rest.rows import (  # noqa: F401
    SOURCE,
    as_int,
    balance_payloads,
    book_payload,
    candle_payload,
    fill_payload,
    need_dict,
    need_str,
    order_payload,
    position_payload,
    ticker_payload,
    trade_payload,
)

TRADES_PATH = "/api/v5/market/history-trades"
CANDLES_PATH = "/api/v5/market/history-candles"
ORDERS_PATH = "/api/v5/trade/orders-history"
ORDERS_ARCHIVE_PATH = "/api/v5/trade/orders-history-archive"
FILLS_PATH = "/api/v5/trade/fills"
FILLS_HISTORY_PATH = "/api/v5/trade/fills-history"
BALANCE_PATH = "/api/v5/account/balance"
POSITIONS_PATH = "/api/v5/account/positions"
BOOKS_PATH = "/api/v5/market/books"
TICKER_PATH = "/api/v5/market/ticker"

PAGE_LIMIT = 100  # the maximum of every history endpoint used here
DAY_MS = 86_400_000
ORDERS_RECENT_MS = 7 * DAY_MS  # orders-history covers 7 days; the archive 3 months
FILLS_RECENT_MS = 3 * DAY_MS  # /trade/fills covers 3 days; fills-history 3 months


class GetJson(Protocol):
    """What a fetcher needs of okx.rest.client.RestClient: the `data` rows of one GET."""

    def get(
        self,
        path: str,
        params: Mapping[str, str] | None = None,
        signed: bool = False,
        *,
        row_type: type | None = dict,
    ) -> list[Any]: ...


# One step of a plan: (endpoint path, begin ms, end ms)
PlanStep = tuple[str, int, int]


@dataclass(frozen=True)
class Page:
    records: list[Payload]  # contract payloads, oldest first within the page
    cursor: str | None  # pass as resume= to continue after this page; None when done
    # True on the last page when the exchange ran out of history before the lower bound of the
    # range was reached (e.g. trades older than OKX keeps): the range cannot be complete
    history_ended: bool = False


# ----- pure helpers ------------------------------------------------------------------------------


def in_range(value: int, low: int | None, high: int | None) -> bool:
    """low <= value <= high, an absent bound being open."""
    return (low is None or value >= low) and (high is None or value <= high)


def next_cursor(keys: list[int], previous: int | None, what: str) -> int:
    """The `after` cursor for the page following one whose rows have these keys: the smallest.
    BadReply when the page did not move below the previous cursor (it would loop forever)."""
    low = min(keys)
    if previous is not None and low >= previous:
        raise BadReply(f"{what}: page does not advance the cursor (oldest {low} >= {previous})")
    return low


def split_plan(
    start_ms: int, end_ms: int, now_ms: int, recent_ms: int, recent_path: str, archive_path: str
) -> list[PlanStep]:
    """Which endpoint serves which part of [start_ms, end_ms], newest part first (pure):
    the recent endpoint for what lies within `recent_ms` of now, the archive for the rest."""
    if end_ms < start_ms:
        return []
    cutoff = now_ms - recent_ms
    if start_ms >= cutoff:
        return [(recent_path, start_ms, end_ms)]
    if end_ms < cutoff:
        return [(archive_path, start_ms, end_ms)]
    return [(recent_path, cutoff, end_ms), (archive_path, start_ms, cutoff - 1)]


def encode_cursor(path: str, key: int) -> str:
    return f"{path.rsplit('/', 1)[1]}:{key}"


def decode_cursor(cursor: str, plan: list[PlanStep]) -> tuple[int, int]:
    """'orders-history-archive:123' -> (index of that step in plan, 123); BadReply if foreign."""
    name, _, key = cursor.rpartition(":")
    for i, (path, _, _) in enumerate(plan):
        if path.rsplit("/", 1)[1] == name:
            return i, as_int(key, "resume cursor")
    if not plan:
        return 0, 0
    raise BadReply(f"resume cursor {cursor[:60]!r} does not belong to this range")


# ----- fetchers ----------------------------------------------------------------------------------


def trades(
    client: GetJson,
    inst_id: str,
    *,
    lower_id: int | str | None = None,
    upper_id: int | str | None = None,
    lower_ms: int | None = None,
    upper_ms: int | None = None,
    resume: str | None = None,
) -> Iterator[Page]:
    """Every trade with lower_id < tradeId < upper_id (exclusive) and lower_ms <= ts <= upper_ms
    (inclusive), any bound optional, oldest first within each page, pages newest first.

    Walks history-trades type=1 down from `after=upper_id`. With only a time ceiling, the first
    page comes from type=2 (`after=upper_ms+1`: trades at or before upper_ms); with no ceiling at
    all, from the newest page. Stops at the first trade at or below lower_id / before lower_ms,
    or when OKX has nothing older."""
    low_id = None if lower_id is None else as_int(str(lower_id), "lower_id")
    high_id = None if upper_id is None else as_int(str(upper_id), "upper_id")
    base = {"instId": inst_id, "limit": str(PAGE_LIMIT)}
    cursor = as_int(resume, "resume cursor") if resume is not None else high_id
    # With only a time ceiling, the first page is asked by time (type=2) after this ts
    first_after_ms = upper_ms + 1 if cursor is None and upper_ms is not None else None
    if (low_id is not None and high_id is not None and high_id - low_id <= 1) or (
        lower_ms is not None and upper_ms is not None and upper_ms < lower_ms
    ):
        yield Page([], None)  # an empty range: nothing to ask OKX
        return
    while True:
        if first_after_ms is not None:
            params = {**base, "type": "2", "after": str(first_after_ms)}
        else:
            params = {**base, "type": "1", **({"after": str(cursor)} if cursor is not None else {})}
        rows = [trade_payload(r, inst_id) for r in client.get(TRADES_PATH, params)]
        if not rows:
            yield Page([], None, history_ended=low_id is not None or lower_ms is not None)
            return
        ids = [int(r["tradeId"]) for r in rows]
        if cursor is not None:
            # OKX caches may serve a stale page; anything not older than the cursor is a repeat
            fresh = [(i, r) for i, r in zip(ids, rows) if i < cursor]
            if not fresh:
                raise BadReply(
                    f"history-trades {inst_id}: page does not advance the cursor "
                    f"(oldest {min(ids)} >= {cursor})"
                )
            ids, rows = [i for i, _ in fresh], [r for _, r in fresh]
        cursor = next_cursor(ids, cursor, f"history-trades {inst_id}")
        first_after_ms = None
        keep = [
            (i, r)
            for i, r in zip(ids, rows)
            if in_range(
                i, None if low_id is None else low_id + 1, None if high_id is None else high_id - 1
            )
            and in_range(int(r["ts"]), lower_ms, upper_ms)
        ]
        keep.sort(key=lambda pair: pair[0])
        oldest_ts = min(int(r["ts"]) for r in rows)
        done = (low_id is not None and cursor <= low_id + 1) or (
            lower_ms is not None and oldest_ts < lower_ms
        )
        yield Page([r for _, r in keep], None if done else str(cursor))
        if done:
            return


def candles(
    client: GetJson,
    inst_id: str,
    bar: str,
    start_ms: int,
    end_ms: int,
    *,
    resume: str | None = None,
) -> Iterator[Page]:
    """Confirmed bars (confirm "1") with start_ms <= ts <= end_ms from history-candles, walking
    down from end_ms with `after` (bar open time). A forming bar is never returned: it is current
    state, not history."""
    cursor = as_int(resume, "resume cursor") if resume is not None else end_ms + 1
    while True:
        params = {"instId": inst_id, "bar": bar, "after": str(cursor), "limit": str(PAGE_LIMIT)}
        reply = client.get(CANDLES_PATH, params, row_type=list)
        rows = [candle_payload(r, inst_id, bar) for r in reply]
        if not rows:
            yield Page([], None, history_ended=True)
            return
        cursor = next_cursor([int(r["ts"]) for r in rows], cursor, f"history-candles {inst_id}")
        keep = sorted(
            (r for r in rows if r["confirm"] == "1" and in_range(int(r["ts"]), start_ms, end_ms)),
            key=lambda r: int(r["ts"]),
        )
        done = cursor <= start_ms
        yield Page(keep, None if done else str(cursor))
        if done:
            return


def _walk_plan(
    client: GetJson,
    plan: list[PlanStep],
    base: dict[str, str],
    key: str,
    time_key: str,
    to_payload: Callable[[Any], Payload],
    resume: str | None,
) -> Iterator[Page]:
    """Page each (path, begin, end) step of a plan down by `key` with `after` (signed GETs).
    A step ends at its first empty page; the cursor names the step, so a resume continues there."""
    step, cursor = decode_cursor(resume, plan) if resume is not None else (0, None)
    while step < len(plan):
        path, begin, end = plan[step]
        name = path.rsplit("/", 1)[1]
        params = {**base, "begin": str(begin), "end": str(end), "limit": str(PAGE_LIMIT)}
        if cursor is not None:
            params["after"] = str(cursor)
        rows = [to_payload(r) for r in client.get(path, params, signed=True)]
        if not rows:
            step, cursor = step + 1, None
            continue
        cursor = next_cursor([int(r[key]) for r in rows], cursor, name)
        keep = sorted(
            (r for r in rows if in_range(int(r[time_key]), begin, end)), key=lambda r: int(r[key])
        )
        yield Page(keep, encode_cursor(path, cursor))
    yield Page([], None)


def orders(
    client: GetJson,
    inst_type: str,
    start_ms: int,
    end_ms: int,
    *,
    now_ms: int | None = None,
    resume: str | None = None,
) -> Iterator[Page]:
    """Completed orders with start_ms <= cTime <= end_ms: orders-history for the part within
    7 days of now, orders-history-archive (3 months) for the part before; cursor = ordId."""
    now = clock.now_ms() if now_ms is None else now_ms
    plan = split_plan(start_ms, end_ms, now, ORDERS_RECENT_MS, ORDERS_PATH, ORDERS_ARCHIVE_PATH)
    yield from _walk_plan(
        client, plan, {"instType": inst_type}, "ordId", "cTime", order_payload, resume
    )


def fills(
    client: GetJson,
    inst_type: str,
    start_ms: int,
    end_ms: int,
    *,
    now_ms: int | None = None,
    resume: str | None = None,
) -> Iterator[Page]:
    """Fills with start_ms <= ts <= end_ms: /trade/fills within 3 days of now, fills-history
    (3 months) before that; cursor = billId."""
    now = clock.now_ms() if now_ms is None else now_ms
    plan = split_plan(start_ms, end_ms, now, FILLS_RECENT_MS, FILLS_PATH, FILLS_HISTORY_PATH)
    yield from _walk_plan(
        client, plan, {"instType": inst_type}, "billId", "ts", fill_payload, resume
    )


def balances(client: GetJson) -> list[Payload]:
    """A REST snapshot of every non-zero balance, as balances records with source "rest"."""
    return [
        rec for row in client.get(BALANCE_PATH, None, signed=True) for rec in balance_payloads(row)
    ]


def positions(client: GetJson, inst_type: str | None = None) -> list[Payload]:
    """A REST snapshot of the open positions, as positions records with source "rest"."""
    params = {"instType": inst_type} if inst_type else None
    return [position_payload(row) for row in client.get(POSITIONS_PATH, params, signed=True)]


def book(client: GetJson, inst_id: str, depth: int = 400) -> Payload:
    """The current book (up to 400 levels a side, with its seqId) as a books record."""
    rows = client.get(BOOKS_PATH, {"instId": inst_id, "sz": str(depth)})
    if len(rows) != 1:
        raise BadReply(f"books {inst_id}: expected one row, got {len(rows)}")
    return book_payload(rows[0], inst_id, depth)


def ticker(client: GetJson, inst_id: str) -> Payload:
    """The current ticker of one instrument as a tickers record."""
    rows = client.get(TICKER_PATH, {"instId": inst_id})
    if len(rows) != 1:
        raise BadReply(f"ticker {inst_id}: expected one row")
    return ticker_payload(rows[0], inst_id)
