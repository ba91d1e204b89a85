"""Rolling VWAP, pure and exact: sum(px*sz) / sum(sz) over the trades of a trailing window.

The value at second mark `m` (a multiple of 1000 ms) covers the trades with m - window < ts <= m.
Sums are exact (Decimal, ohlcv.EXACT); the one inexact step, the division, is rounded half-even
to 34 significant digits (IEEE decimal128's precision), then written without an exponent. A mark
whose window holds no trade has no value (and no document). `validated` is true only when every
trade in the window carries validated: true (REST confirmed it: the audit or backfill).

`marks()` takes the trades sorted by ts once and answers every mark by binary search over prefix
sums: O(trades + marks x log trades), whatever the window.
"""

from __future__ import annotations

import decimal
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from tasks.derive import bars
from tasks.derive.ohlcv import EXACT, fmt, unique_sorted

QUOTIENT = decimal.Context(prec=34, rounding=decimal.ROUND_HALF_EVEN)


@dataclass(frozen=True)
class Mark:
    ts: int
    vwap: Decimal
    n: int
    validated: bool


def is_validated(trade: Mapping[str, Any]) -> bool:
    """validated: true. The wire-protocol test server (nx-27017) hands back a `$set` true as 1,
    so 1 counts too; anything else (False, missing, "true") does not."""
    v = trade.get("validated")
    return v is True or (type(v) is int and v == 1)


def first_mark(ts: int) -> int:
    """The first second mark at or after `ts`."""
    return -(-ts // bars.SECOND) * bars.SECOND


def marks(trades: Sequence[Mapping[str, Any]], start: int, end: int, window_ms: int) -> list[Mark]:
    """VWAP at every second mark in [start, end] (inclusive) whose window holds a trade.

    `trades` must include every trade with ts in (start - window_ms, end]; any order, duplicates
    allowed."""
    ordered = unique_sorted(trades)
    times = [int(t["ts"]) for t in ordered]
    num, den, unval = [Decimal(0)], [Decimal(0)], [0]
    for t in ordered:
        px, sz = Decimal(str(t["px"])), Decimal(str(t["sz"]))
        num.append(EXACT.add(num[-1], EXACT.multiply(px, sz)))
        den.append(EXACT.add(den[-1], sz))
        unval.append(unval[-1] + (0 if is_validated(t) else 1))
    out = []
    m = first_mark(start)
    while m <= end:
        lo, hi = bisect_right(times, m - window_ms), bisect_right(times, m)
        if hi > lo:
            d = EXACT.subtract(den[hi], den[lo])
            if d > 0:
                value = QUOTIENT.divide(EXACT.subtract(num[hi], num[lo]), d)
                out.append(Mark(m, value, hi - lo, unval[hi] == unval[lo]))
        m += bars.SECOND
    return out


def vwap_doc(inst_id: str, mark: Mark, window_ms: int) -> dict[str, Any]:
    """The MongoDB `vwap` document (shapes: the read side's shared contract)."""
    return {
        "_id": f"{inst_id}:{mark.ts}",
        "instId": inst_id,
        "ts": mark.ts,
        "vwap": fmt(mark.vwap),
        "window_ms": window_ms,
        "n": mark.n,
        "validated": mark.validated,
        "dt": datetime.fromtimestamp(mark.ts / 1000, tz=UTC),
    }


def redis_fields(doc: Mapping[str, Any]) -> dict[str, str]:
    """The `vwap:<instId>` hash of the latest mark."""
    return {
        "vwap": doc["vwap"],
        "ts": str(doc["ts"]),
        "window_ms": str(doc["window_ms"]),
        "n": str(doc["n"]),
        "validated": "1" if doc["validated"] else "0",
    }
