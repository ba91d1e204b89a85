"""Candles from trades, pure and exact: OHLCV in Decimal, bars built from their 1m bars.

A trade is a mapping with OKX's strings px, sz, ts, tradeId (what MongoDB's `trades` holds).
Trades are ordered by (ts, tradeId as an integer): the order OKX numbers them, so the open and
close do not depend on the order in which trades arrived or were written; duplicates (the same
tradeId twice, e.g. live and backfilled) count once. vol is the sum of sz (base currency for
spot), volCcy the sum of px*sz (quote currency), as OKX reports spot candles.

A longer bar is the combination of its 1m bars (first open, max high, min low, last close,
summed volumes): exact, and a rebuilt day reads at most 1440 documents instead of every trade.
"""

from __future__ import annotations

import decimal
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from tasks.derive import bars

# Wide enough that sums and products of OKX decimals are exact (an inexact result would raise):
# prices and sizes have at most ~20 significant digits, sums of millions of them gain 7 more.
EXACT = decimal.Context(prec=80, traps=[decimal.Inexact, decimal.InvalidOperation])
SOURCE = "trades"


def fmt(d: Decimal) -> str:
    """Plain decimal text, never an exponent ("1E+2" -> "100", "0.0300" -> "0.03")."""
    if d == 0:
        return "0"
    return format(d.normalize(EXACT), "f")


def trade_order(t: Mapping[str, Any]) -> tuple[int, int]:
    tid = str(t["tradeId"])
    return int(t["ts"]), int(tid) if tid.isdigit() else 0


def unique_sorted(trades: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """One trade per tradeId, in OKX's order."""
    seen: dict[str, Mapping[str, Any]] = {}
    for t in trades:
        seen.setdefault(str(t["tradeId"]), t)
    return sorted(seen.values(), key=trade_order)


@dataclass(frozen=True)
class Ohlcv:
    o: Decimal
    h: Decimal
    l: Decimal  # noqa: E741 - OKX's field name
    c: Decimal
    vol: Decimal
    vol_ccy: Decimal
    n: int


def from_trades(trades: Iterable[Mapping[str, Any]]) -> Ohlcv | None:
    """The OHLCV of `trades` (any order, duplicates allowed); None without trades."""
    ordered = unique_sorted(trades)
    if not ordered:
        return None
    pxs = [Decimal(str(t["px"])) for t in ordered]
    szs = [Decimal(str(t["sz"])) for t in ordered]
    vol, vol_ccy = Decimal(0), Decimal(0)
    for px, sz in zip(pxs, szs):
        vol = EXACT.add(vol, sz)
        vol_ccy = EXACT.add(vol_ccy, EXACT.multiply(px, sz))
    return Ohlcv(pxs[0], max(pxs), min(pxs), pxs[-1], vol, vol_ccy, len(ordered))


def combine(parts: Iterable[tuple[int, Ohlcv]]) -> Ohlcv | None:
    """Combine (start, Ohlcv) of consecutive shorter bars into one bar; None without parts."""
    ordered = [p for _s, p in sorted(parts, key=lambda sp: sp[0])]
    if not ordered:
        return None
    vol, vol_ccy = Decimal(0), Decimal(0)
    for p in ordered:
        vol = EXACT.add(vol, p.vol)
        vol_ccy = EXACT.add(vol_ccy, p.vol_ccy)
    return Ohlcv(
        ordered[0].o,
        max(p.h for p in ordered),
        min(p.l for p in ordered),
        ordered[-1].c,
        vol,
        vol_ccy,
        sum(p.n for p in ordered),
    )


def from_doc(doc: Mapping[str, Any]) -> Ohlcv:
    """The Ohlcv of a stored trades candle."""
    return Ohlcv(
        Decimal(doc["o"]),
        Decimal(doc["h"]),
        Decimal(doc["l"]),
        Decimal(doc["c"]),
        Decimal(doc["vol"]),
        Decimal(doc["volCcy"]),
        int(doc["n"]),
    )


def candle_id(inst_id: str, bar: str, start: int) -> str:
    return f"{inst_id}:{bar}:{start}:{SOURCE}"


@dataclass(frozen=True)
class Coverage:
    """What the rebuild knows about the stream of one instrument's trades.

    covered_from  first instant whose trades are stored (the first stored trade, or the start
                  of a filled backfill before it); a bar starting earlier is partly unknown
    watermark     the feeder's trades watermark (newest exchange time it published)
    holes         [start, end] of open and unrepairable trade gaps (closed intervals)
    now_ms        exchange-ish time now (a bar is over once its end has passed)
    """

    covered_from: int | None
    watermark: int
    holes: list[tuple[int, int]]
    now_ms: int


def flags(bar: str, start: int, cov: Coverage) -> tuple[bool, bool]:
    """(complete, final) of the bar starting at `start`."""
    end = bars.end_of(bar, start)
    complete = (
        cov.covered_from is not None
        and cov.covered_from <= start
        and not bars.overlaps(start, end, cov.holes)
    )
    final = complete and end <= cov.now_ms and cov.watermark >= end
    return complete, final


def candle_doc(inst_id: str, bar: str, start: int, c: Ohlcv, cov: Coverage) -> dict[str, Any]:
    """The MongoDB document of a trades candle (shapes: the read side's shared contract)."""
    complete, final = flags(bar, start, cov)
    return {
        "_id": candle_id(inst_id, bar, start),
        "instId": inst_id,
        "bar": bar,
        "ts": str(start),
        "source": SOURCE,
        "o": fmt(c.o),
        "h": fmt(c.h),
        "l": fmt(c.l),
        "c": fmt(c.c),
        "vol": fmt(c.vol),
        "volCcy": fmt(c.vol_ccy),
        "n": c.n,
        "complete": complete,
        "final": final,
        "dt": datetime.fromtimestamp(start / 1000, tz=UTC),
    }
