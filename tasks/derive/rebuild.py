"""One rebuild: the dirty minutes' candles at every bar, the VWAP marks they touch, flags.

Plain code over injected clients (unit-tested with mongomock and a real redis-server); the beat
task (tasks/derive/tasks.py) only builds them. Per instrument:

    1. claim the oldest dirty (instId, minute) marks (derive:dirty)
    2. add the minutes the audit validated since the last rebuild (audit:<instId>
       validated_until past derive:validated_until): their VWAP marks may flip to validated
    3. 1m candles of the dirty minutes from stored trades; every longer bar containing them
       from its stored 1m candles
    4. VWAP marks whose window holds a dirty minute (up to derive:vwap_until), and new marks
       from derive:vwap_until up to the trades watermark (at most MAX_EXTEND_MS a run)
    5. complete/final of the trades candles that were not final yet
    6. remove the claimed marks nobody marked again meanwhile

Completeness (ohlcv.Coverage): a bar is complete when the trades are known from before its
start (the first stored trade, or a filled backfill reaching further back) and no open or
unrepairable trades gap touches it; final when it is complete and both the feeder's trades
watermark and the newest stored trade have passed its end (the second guards against trades
published but not yet written).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from core import keys
from okx.clock import now_ms as wall_ms
from tasks.derive import bars, dirty, store
from tasks.derive import vwap as vw
from tasks.derive.ohlcv import SOURCE, Coverage, candle_doc, combine, flags, from_doc, from_trades

log = logging.getLogger(__name__)

TRADE_CHANNELS = ("trades", "trades-all")
MAX_EXTEND_MS = 3_600_000  # new VWAP marks per instrument and run (a catch-up takes several)
OPEN_STATUSES = ("open", "filling", "failed")


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _hash(h: dict) -> dict[str, Any]:
    return {_s(k): v for k, v in h.items()}


def _int(v: Any) -> int | None:
    try:
        return int(_s(v)) if v is not None else None
    except ValueError:
        return None


@dataclass
class Counts:
    instruments: int = 0
    dirty: int = 0
    candles: int = 0
    vwap: int = 0
    flagged: int = 0
    cleared: int = 0
    per_inst: dict[str, int] = field(default_factory=dict)


def merge_spans(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Merge [a, b] closed spans that touch or overlap (b + 1 >= next a)."""
    out: list[tuple[int, int]] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


class Rebuilder:
    def __init__(
        self,
        db: Any,
        state: Any,
        ledger: Any,
        *,
        window_ms: int = 300_000,
        batch: int = 2000,
        bar_names: tuple[str, ...] = bars.DERIVED_BARS,
        clock: Callable[[], int] = wall_ms,
    ) -> None:
        self.db, self.state, self.ledger = db, state, ledger
        self.window_ms, self.batch, self.bar_names, self.clock = window_ms, batch, bar_names, clock

    # ----- inputs ----------------------------------------------------------------------------
    def _watermarks(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for name in self.ledger.scan_iter(match=keys.watermark_pattern("trades"), count=1000):
            channel, inst = keys.parse_watermark_key(_s(name))
            if channel in TRADE_CHANNELS:
                ts = _int(self.ledger.hget(name, "ts")) or 0
                found[inst] = max(found.get(inst, 0), ts)
        return found

    def _open_holes(self) -> dict[str, list[tuple[int, int]]]:
        holes: dict[str, list[tuple[int, int]]] = defaultdict(list)
        ids = [_s(g) for g in self.ledger.zrange(keys.GAPS_OPEN, 0, -1)]
        pipe = self.ledger.pipeline(transaction=False)
        for gid in ids:
            pipe.hgetall(keys.gap_key(gid))
        for h in pipe.execute():
            g = {_s(k): _s(v) for k, v in h.items()}
            if g.get("channel") in TRADE_CHANNELS and g.get("status") in OPEN_STATUSES:
                start, end = _int(g.get("start_ms")), _int(g.get("end_ms"))
                if start is not None and end is not None:
                    holes[g.get("instId", "")].append((start, end))
        return holes

    def coverage(
        self, inst: str, wm: int, open_holes: list[tuple[int, int]], newest: int | None
    ) -> Coverage:
        first = _int(self.state.hget(keys.DERIVE_FIRST_TRADE, inst))
        if first is None:
            first = store.first_trade_ms(self.db, inst)  # read once, then cached
            if first is not None:
                self.state.hset(keys.DERIVE_FIRST_TRADE, inst, str(first))
        # a filled backfill reaching further back than the first trade: known from its start
        backfilled = _int(self.state.hget(keys.DERIVE_COVERED_FROM, inst))
        known = [v for v in (first, backfilled) if v is not None]
        holes = list(open_holes)
        for m in self.state.zrange(keys.derive_holes(inst), 0, -1):
            a, _, b = _s(m).partition(":")
            holes.append((int(a), int(b)))
        watermark = min(wm, newest) if newest is not None else 0
        return Coverage(
            covered_from=min(known) if known else None,
            watermark=watermark,
            holes=holes,
            now_ms=max(self.clock(), watermark),
        )

    def _newest(self, inst: str, minutes: set[int]) -> int | None:
        """Newest trade time the rebuild has seen stored: every stored trade marks its minute
        dirty, so the newest dirty minute's trades hold it (cached in derive:newest)."""
        known = _int(self.state.hget(keys.DERIVE_NEWEST, inst))
        if minutes and (known is None or max(minutes) + bars.MINUTE > known):
            top = max(minutes)
            found = [
                int(t["ts"]) for t in store.trades_between(self.db, inst, top, top + bars.MINUTE)
            ]
            if known is None and not found:
                found = [v for v in (store.last_trade_ms(self.db, inst),) if v is not None]
            if found and (known is None or max(found) > known):
                known = max(found)
                self.state.hset(keys.DERIVE_NEWEST, inst, str(known))
        return known

    def _audited_minutes(self, inst: str) -> tuple[set[int], int | None]:
        audited = _int(self.ledger.hget(keys.audit(inst), "validated_until"))
        done = _int(self.state.hget(keys.VALIDATED_UNTIL_KEY, inst))
        if audited is None or (done is not None and audited <= done):
            return set(), None
        start = done if done is not None else store.first_trade_ms(self.db, inst)
        if start is None:
            return set(), audited
        start = max(start, audited - bars.DAY)
        first, last = bars.minute_of(start), bars.minute_of(audited)
        return set(range(first, last + 1, bars.MINUTE)), audited

    # ----- the run -----------------------------------------------------------------------------
    def run(self) -> Counts:
        claimed = dirty.claim(self.state, self.batch)
        minutes: dict[str, set[int]] = defaultdict(set)
        for m, _score in claimed:
            inst, minute = dirty.parse_member(m)
            minutes[inst].add(minute)
        wms = self._watermarks()
        open_holes = self._open_holes()
        counts = Counts(dirty=len(claimed))
        seen = {i: _int(v) or 0 for i, v in _hash(self.state.hgetall(keys.DERIVE_SEEN_WM)).items()}
        for inst in sorted(set(minutes) | set(wms)):
            audited_minutes, audited = self._audited_minutes(inst)
            todo = minutes[inst] | audited_minutes
            wm = wms.get(inst, 0)
            if not todo and wm == seen.get(inst) and not open_holes.get(inst):
                continue  # nothing new: no dirty minute, the watermark has not moved
            newest = self._newest(inst, todo)
            cov = self.coverage(inst, wm, open_holes.get(inst, []), newest)
            counts.candles += self.rebuild_candles(inst, todo, cov)
            counts.vwap += self.rebuild_vwap(inst, todo, cov)
            counts.flagged += self.reflag(inst, cov)
            if audited is not None:
                self.state.hset(keys.VALIDATED_UNTIL_KEY, inst, str(audited))
            self.state.hset(keys.DERIVE_SEEN_WM, inst, str(wm))
            counts.instruments += 1
        counts.cleared = dirty.done(self.state, claimed)
        return counts

    def rebuild_candles(self, inst: str, minutes: set[int], cov: Coverage) -> int:
        if not minutes:
            return 0
        coll = self.db[keys.CANDLES_COLLECTION]
        written = 0
        for start, end in bars.runs(minutes):
            by_minute: dict[int, list[dict]] = defaultdict(list)
            for t in store.trades_between(self.db, inst, start, end):
                by_minute[bars.minute_of(int(t["ts"]))].append(t)
            docs = []
            for minute, trades in sorted(by_minute.items()):
                c = from_trades(trades)
                if c is not None:
                    docs.append(candle_doc(inst, bars.BASE_BAR, minute, c, cov))
            existing = store.trade_candles(self.db, inst, bars.BASE_BAR, start, end)
            written += store.write_changed(coll, docs, existing)
        return written + self._rebuild_longer_bars(inst, minutes, cov)

    def _rebuild_longer_bars(self, inst: str, minutes: set[int], cov: Coverage) -> int:
        """Every longer bar containing `minutes`, from its stored 1m candles: one read of the 1m
        candles of the longest bars' span and one of the existing longer bars, per span."""
        longer = [b for b in self.bar_names if b != bars.BASE_BAR]
        if not longer:
            return 0
        widest = max(longer, key=bars.length_of)
        spans: list[tuple[int, int]] = []
        for s in bars.bars_containing(minutes, widest):
            e = bars.end_of(widest, s)
            if spans and spans[-1][1] == s:
                spans[-1] = (spans[-1][0], e)
            else:
                spans.append((s, e))
        coll = self.db[keys.CANDLES_COLLECTION]
        written = 0
        for span_start, span_end in spans:
            ones = [
                (int(d["ts"]), from_doc(d))
                for d in store.trade_candles(self.db, inst, bars.BASE_BAR, span_start, span_end)
            ]
            docs = []
            for bar in longer:
                wanted = set(bars.bars_containing(minutes, bar))
                parts: dict[int, list[tuple[int, Any]]] = defaultdict(list)
                for ts, c in ones:
                    start = bars.start_of(bar, ts)
                    if start in wanted:
                        parts[start].append((ts, c))
                for start, ps in sorted(parts.items()):
                    combined = combine(ps)
                    if combined is not None:
                        docs.append(candle_doc(inst, bar, start, combined, cov))
            existing = store.trade_candles(self.db, inst, longer, span_start, span_end)
            written += store.write_changed(coll, docs, existing)
        return written

    def rebuild_vwap(self, inst: str, minutes: set[int], cov: Coverage) -> int:
        w = self.window_ms
        until = _int(self.state.hget(keys.DERIVE_VWAP_UNTIL, inst))
        top = cov.watermark - cov.watermark % bars.SECOND
        spans: list[tuple[int, int]] = []
        if until is not None:
            for start, end in bars.runs(minutes):
                # a trade at t is in the windows of the marks t <= m < t + w
                hi = min(end - 1 + w - 1, until)
                if start <= hi:
                    spans.append((start, hi))
            ext_from = until + bars.SECOND
        else:
            ext_from = vw.first_mark(cov.covered_from) if cov.covered_from is not None else top + 1
        ext_to = min(top, ext_from + MAX_EXTEND_MS)
        if ext_from <= ext_to:
            spans.append((ext_from, ext_to))
        coll = self.db[keys.VWAP_COLLECTION]
        written = 0
        latest: dict | None = None
        for a, b in merge_spans(spans):
            trades = store.trades_between(self.db, inst, a - w + 1, b + 1)
            docs = [vw.vwap_doc(inst, m, w) for m in vw.marks(trades, a, b, w)]
            written += store.write_changed(coll, docs, store.vwap_between(self.db, inst, a, b))
            if docs and (latest is None or docs[-1]["ts"] > latest["ts"]):
                latest = docs[-1]
        if ext_from <= ext_to:
            self.state.hset(keys.DERIVE_VWAP_UNTIL, inst, str(ext_to))
        shown = _int(self.state.hget(keys.vwap_key(inst), "ts"))
        if latest is not None and (shown is None or latest["ts"] >= shown):
            self.state.hset(keys.vwap_key(inst), mapping=vw.redis_fields(latest))
        return written

    def reflag(self, inst: str, cov: Coverage) -> int:
        coll = self.db[keys.CANDLES_COLLECTION]
        changed = 0
        for d in store.unfinal_candles(self.db, inst):
            if d.get("source") != SOURCE:
                continue
            complete, final = flags(d["bar"], int(d["ts"]), cov)
            if (complete, final) != (d.get("complete"), d.get("final")):
                store.set_flags(coll, d["_id"], complete, final)
                changed += 1
        return changed
