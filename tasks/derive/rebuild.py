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
from tasks.derive.build import TradeCache, build_candles, build_vwap
from tasks.derive.ohlcv import Coverage, flags

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
        self.window_ms, self.batch, self.clock = window_ms, batch, clock
        self.bar_names = bars.build_order(bar_names)

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

    def _covered_from(self, inst: str) -> int | None:
        first = _int(self.state.hget(keys.DERIVE_FIRST_TRADE, inst))
        if first is None:
            first = store.first_trade_ms(self.db, inst)  # read once, then cached
            if first is not None:
                self.state.hset(keys.DERIVE_FIRST_TRADE, inst, str(first))
        # a filled backfill reaching further back than the first trade: known from its start
        backfilled = _int(self.state.hget(keys.DERIVE_COVERED_FROM, inst))
        known = [v for v in (first, backfilled) if v is not None]
        return min(known) if known else None

    def _holes(self, inst: str, open_holes: list[tuple[int, int]]) -> list[tuple[int, int]]:
        holes = list(open_holes)
        for m in self.state.zrange(keys.derive_holes(inst), 0, -1):
            a, _, b = _s(m).partition(":")
            holes.append((int(a), int(b)))
        return holes

    def _newest(self, inst: str, cache: TradeCache) -> int | None:
        """Newest trade time the rebuild has seen stored: every stored trade marks its minute
        dirty, so the dirty minutes' trades (in the cache) hold it; cached in derive:newest."""
        known = _int(self.state.hget(keys.DERIVE_NEWEST, inst))
        found = cache.newest(inst)
        if known is None and found is None:
            found = store.last_trade_ms(self.db, inst)
        if found is not None and (known is None or found > known):
            known = found
            self.state.hset(keys.DERIVE_NEWEST, inst, str(known))
        return known

    def _audited_minutes(self, inst: str) -> tuple[set[int], int | None]:
        audited = _int(self.ledger.hget(keys.audit(inst), "validated_until"))
        done = _int(self.state.hget(keys.VALIDATED_UNTIL_KEY, inst))
        if audited is None or (done is not None and audited <= done):
            return set(), None
        start = done if done is not None else self._covered_from(inst)
        if start is None:
            return set(), audited
        start = max(start, audited - bars.DAY)
        first, last = bars.minute_of(start), bars.minute_of(audited)
        return set(range(first, last + 1, bars.MINUTE)), audited

    def _extension(self, until: int | None, covered: int | None, top: int) -> tuple[int, int]:
        """[from, to] of the new VWAP marks (from > to: none)."""
        if until is not None:
            start = until + bars.SECOND
        elif covered is not None:
            start = vw.first_mark(covered)
        else:
            return top + 1, top
        return start, min(top, start + MAX_EXTEND_MS)

    # ----- the run -----------------------------------------------------------------------------
    def run(self) -> Counts:
        claimed = dirty.claim(self.state, self.batch)
        minutes: dict[str, set[int]] = defaultdict(set)
        for m, _score in claimed:
            inst, minute = dirty.parse_member(m)
            minutes[inst].add(minute)
        wms = self._watermarks()
        open_holes = self._open_holes()
        seen = {i: _int(v) for i, v in _hash(self.state.hgetall(keys.DERIVE_SEEN_WM)).items()}
        counts = Counts(dirty=len(claimed))
        todo: dict[str, set[int]] = {}
        audited_at: dict[str, int] = {}
        for inst in sorted(set(minutes) | set(wms)):
            audited_minutes, audited = self._audited_minutes(inst)
            work = minutes.get(inst, set()) | audited_minutes
            if not work and wms.get(inst, 0) == seen.get(inst) and not open_holes.get(inst):
                continue  # nothing new: no dirty minute, the watermark has not moved
            todo[inst] = work
            if audited is not None:
                audited_at[inst] = audited
        if todo:
            self._rebuild(todo, wms, open_holes, counts)
        for inst in todo:
            if inst in audited_at:
                self.state.hset(keys.VALIDATED_UNTIL_KEY, inst, str(audited_at[inst]))
            self.state.hset(keys.DERIVE_SEEN_WM, inst, str(wms.get(inst, 0)))
        counts.instruments = len(todo)
        counts.cleared = dirty.done(self.state, claimed)
        return counts

    def _rebuild(
        self,
        todo: dict[str, set[int]],
        wms: dict[str, int],
        open_holes: dict[str, list[tuple[int, int]]],
        counts: Counts,
    ) -> None:
        w = self.window_ms
        insts = sorted(todo)
        covered = {i: self._covered_from(i) for i in insts}
        untils = {i: _int(self.state.hget(keys.DERIVE_VWAP_UNTIL, i)) for i in insts}
        ranges: list[tuple[int, int]] = []
        for inst in insts:
            ranges += [(s - w, e + w) for s, e in bars.runs(todo[inst])]
            wm = wms.get(inst, 0)
            a, b = self._extension(untils[inst], covered[inst], wm - wm % bars.SECOND)
            if a <= b:
                ranges.append((a - w, b + 1))
        cache = TradeCache(self.db, insts, ranges)
        covs: dict[str, Coverage] = {}
        for inst in insts:
            newest = self._newest(inst, cache)
            watermark = min(wms.get(inst, 0), newest) if newest is not None else 0
            covs[inst] = Coverage(
                covered_from=covered[inst],
                watermark=watermark,
                holes=self._holes(inst, open_holes.get(inst, [])),
                now_ms=max(self.clock(), watermark),
            )
        counts.candles = build_candles(self.db, todo, covs, cache, self.bar_names)
        spans: dict[str, list[tuple[int, int]]] = {}
        new_until: dict[str, int] = {}
        for inst in insts:
            wm = covs[inst].watermark
            until = untils[inst]
            inst_spans = []
            if until is not None:
                for start, end in bars.runs(todo[inst]):
                    # a trade at t is in the windows of the marks t <= m < t + w
                    hi = min(end - 1 + w - 1, until)
                    if start <= hi:
                        inst_spans.append((start, hi))
            a, b = self._extension(until, covered[inst], wm - wm % bars.SECOND)
            if a <= b:
                inst_spans.append((a, b))
                new_until[inst] = b
            spans[inst] = merge_spans(inst_spans)
        counts.vwap, latest = build_vwap(self.db, spans, cache, w)
        for inst, b in new_until.items():
            self.state.hset(keys.DERIVE_VWAP_UNTIL, inst, str(b))
        for inst, doc in latest.items():
            shown = _int(self.state.hget(keys.vwap_key(inst), "ts"))
            if shown is None or doc["ts"] >= shown:
                self.state.hset(keys.vwap_key(inst), mapping=vw.redis_fields(doc))
        counts.flagged = self.reflag(insts, covs)

    def reflag(self, insts: list[str], covs: dict[str, Coverage]) -> int:
        """complete/final of the trades candles not final yet, as the coverage says now."""
        coll = self.db[keys.CANDLES_COLLECTION]
        changed = 0
        for d in store.unfinal_candles(self.db, insts):
            complete, final = flags(d["bar"], int(d["ts"]), covs[d["instId"]])
            if (complete, final) != (d.get("complete"), d.get("final")):
                store.set_flags(coll, d, complete, final)
                changed += 1
        return changed
