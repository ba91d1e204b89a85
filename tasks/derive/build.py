"""The rebuild's batched phases: every instrument's work of one kind in a few MongoDB reads.

A rebuild touches the same recent minutes of every instrument, so each phase reads once for all
of them (`instId: {$in: [...]}` over the merged time ranges) instead of once per instrument and
bar: a run costs about a dozen reads whatever the number of instruments (mongomock, which scans
a collection per query, needed that; a real MongoDB is spared round trips).

    TradeCache       the trades of the merged ranges, sorted per instrument; `between()`
    build_candles    1m bars from trades, then every longer bar from its child bars
    build_vwap       the VWAP marks of the given spans
"""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from core import keys
from tasks.derive import bars, store
from tasks.derive import vwap as vw
from tasks.derive.ohlcv import Coverage, candle_doc, combine, from_doc, from_trades, trade_order


class TradeCache:
    """Stored trades of `insts` over `ranges` ([start, end) ms), loaded in one query per merged
    range; other ranges are read on demand."""

    def __init__(self, db: Any, insts: list[str], ranges: list[tuple[int, int]]) -> None:
        self.db = db
        self.loaded = bars.merge(ranges)
        by_inst: dict[str, list[dict]] = defaultdict(list)
        for start, end in self.loaded if insts else []:
            for t in store.trades_of(db, insts, start, end):
                by_inst[t["instId"]].append(t)
        self.trades = {i: sorted(ts, key=trade_order) for i, ts in by_inst.items()}
        self.times = {i: [int(t["ts"]) for t in ts] for i, ts in self.trades.items()}

    def between(self, inst: str, start: int, end: int) -> list[dict]:
        if any(a <= start and end <= b for a, b in self.loaded):
            times = self.times.get(inst, [])
            lo, hi = bisect_left(times, start), bisect_left(times, end)
            return self.trades.get(inst, [])[lo:hi]
        return store.trades_between(self.db, inst, start, end)

    def newest(self, inst: str) -> int | None:
        times = self.times.get(inst)
        return times[-1] if times else None


def build_candles(
    db: Any,
    minutes: Mapping[str, set[int]],
    covs: Mapping[str, Coverage],
    cache: TradeCache,
    bar_names: list[str],
) -> int:
    """Rebuild the candles of `bar_names` (in build order) containing each instrument's dirty
    `minutes`; returns how many documents were written."""
    insts = sorted(i for i, ms in minutes.items() if ms)
    if not insts:
        return 0
    coll = db[keys.CANDLES_COLLECTION]
    written = 0
    docs: list[dict] = []
    one_ranges: list[tuple[int, int]] = []
    for inst in insts:
        for start, end in bars.runs(minutes[inst]):
            one_ranges.append((start, end))
            by_minute: dict[int, list[dict]] = defaultdict(list)
            for t in cache.between(inst, start, end):
                by_minute[bars.minute_of(int(t["ts"]))].append(t)
            for minute, trades in sorted(by_minute.items()):
                c = from_trades(trades)
                if c is not None:
                    docs.append(candle_doc(inst, bars.BASE_BAR, minute, c, covs[inst]))
    existing = [
        d
        for a, b in bars.merge(one_ranges)
        for d in store.trade_candles(db, insts, bars.BASE_BAR, a, b)
    ]
    written += store.write_changed(coll, docs, existing)
    for bar in bar_names:
        if bar != bars.BASE_BAR:
            written += _build_longer(db, coll, bar, minutes, covs, insts)
    return written


def _build_longer(
    db: Any,
    coll: Any,
    bar: str,
    minutes: Mapping[str, set[int]],
    covs: Mapping[str, Coverage],
    insts: list[str],
) -> int:
    child = bars.CHILD_OF[bar]
    wanted = {i: set(bars.bars_containing(minutes[i], bar)) for i in insts}
    ranges = bars.merge([r for i in insts for r in bars.spans(wanted[i], bar)])
    parts: dict[tuple[str, int], list[tuple[int, Any]]] = defaultdict(list)
    existing = []
    for a, b in ranges:
        for d in store.trade_candles(db, insts, [child, bar], a, b):
            if d["bar"] == bar:
                existing.append(d)
                continue
            ts = int(d["ts"])
            start = bars.start_of(bar, ts)
            if start in wanted.get(d["instId"], ()):
                parts[(d["instId"], start)].append((ts, from_doc(d)))
    docs = []
    for (inst, start), ps in sorted(parts.items()):
        c = combine(ps)
        if c is not None:
            docs.append(candle_doc(inst, bar, start, c, covs[inst]))
    return store.write_changed(coll, docs, existing)


def build_vwap(
    db: Any, spans: Mapping[str, list[tuple[int, int]]], cache: TradeCache, window_ms: int
) -> tuple[int, dict[str, dict]]:
    """VWAP marks of every instrument's [a, b] spans (inclusive, ms); (documents written, the
    newest document per instrument)."""
    docs: list[dict] = []
    latest: dict[str, dict] = {}
    ranges: list[tuple[int, int]] = []
    for inst, inst_spans in spans.items():
        for a, b in inst_spans:
            trades = cache.between(inst, a - window_ms + 1, b + 1)
            got = [vw.vwap_doc(inst, m, window_ms) for m in vw.marks(trades, a, b, window_ms)]
            docs += got
            ranges.append((a, b + 1))
            if got and (inst not in latest or got[-1]["ts"] > latest[inst]["ts"]):
                latest[inst] = got[-1]
    insts = sorted(i for i, s in spans.items() if s)
    existing = [d for a, b in bars.merge(ranges) for d in store.vwap_between(db, insts, a, b - 1)]
    return store.write_changed(db[keys.VWAP_COLLECTION], docs, existing), latest
