"""The market of one instrument: a 400-level book that evolves, takers that trade against it.

Pure and deterministic: events come from a Random seeded with (seed, instId); the caller passes
the timestamps. Everything produced during a step is collected in ``out`` for the publisher.
"""

from __future__ import annotations

import random

from .book import DEPTH, Book
from .candles import BARS, CandleSeries
from .instruments import Formatter, InstSpec


class TickOut:
    """What one market step produced, in order."""

    __slots__ = ("bbo", "aggs", "fills", "book_changed")

    def __init__(self) -> None:
        self.bbo: list[tuple] = []  # (ts, seqId, bid level, ask level) per BBO change
        self.aggs: list[tuple] = []  # (lastTradeId, px, sz, side, ts, count, seqId)
        self.fills: list[tuple] = []  # (tradeId, px, sz, side, ts)
        self.book_changed = False


class Market:
    def __init__(self, spec: InstSpec, seed: int, trade_history: int = 200_000) -> None:
        self.spec = spec
        self.inst_id = spec.inst_id
        self.rng = random.Random(f"{seed}:{spec.inst_id}")
        self.fpx = Formatter(spec.px_dp)
        self.fsz = Formatter(spec.sz_dp)
        self.fquote = Formatter(spec.px_dp + spec.sz_dp)
        self.book = Book()
        self.seq = self.rng.randrange(1_000, 5_000_000)  # engine seqId of the last book change
        self.next_trade_id = self.rng.randrange(10_000_000, 900_000_000)
        self.trades: list[tuple] = []  # ring of fills, oldest first
        self.trade_history = trade_history
        self.unit = spec.sz_units(spec.unit_sz)
        self.last_px = spec.px_units(spec.start_px)
        self.last_sz = 0
        self.candles = {bar: CandleSeries(bar) for bar in BARS}
        self.out = TickOut()
        self.paused_until = 0.0
        self.want_bbo = False  # set by the publisher when someone is subscribed to bbo-tbt
        self.pub_seq = self.seq  # seqId of the last books message (stream and REST agree on it)
        self.book_ts = 0  # ts of the last books message
        self._seed_book()

    # ---------------------------------------------------------------- book construction
    def _rand_size(self) -> int:
        return max(1, int(self.unit * self.rng.expovariate(1.0)))

    def _seed_book(self) -> None:
        sp = self.spec.spacing
        mid = self.last_px
        for i in range(DEPTH):
            self.book.bids.add(mid - sp * (i + 1), self._rand_size(), self.rng.randint(1, 6))
            self.book.asks.add(mid + sp * (i + 1), self._rand_size(), self.rng.randint(1, 6))
        self.book.take_changes()

    def replenish(self) -> None:
        """Keep exactly DEPTH levels a side: add at the far end, drop what falls off."""
        for side in (self.book.bids, self.book.asks):
            side.trim(DEPTH)
            while len(side.prices) < DEPTH:
                w = side.worst()
                if w is None:
                    w = self.last_px
                step = self.spec.spacing * (1 + self.rng.randrange(2))
                px = w - step if side.is_bid else w + step
                if px <= 0:
                    break
                side.add(px, self._rand_size(), self.rng.randint(1, 4))

    # ---------------------------------------------------------------- events
    def step(self, t0: int, t1: int, n_events: int) -> None:
        """Generate n_events spread over (t0, t1]."""
        span = max(0, t1 - t0)
        for i in range(n_events):
            ts = t0 + (span * (i + 1)) // n_events
            r = self.rng.random()
            if r < 0.22:
                is_buy = self.rng.random() < 0.5
                self.take(is_buy, max(1, int(self.unit * self.rng.expovariate(0.7))), ts)
            elif r < 0.65:
                self._add(ts)
            else:
                self._cancel(ts)
        self.replenish()

    def _bbo_key(self) -> tuple:
        b, a = self.book.bids, self.book.asks
        bb, ba = b.best(), a.best()
        return (
            bb,
            b.levels[bb][0] if bb is not None else 0,
            ba,
            a.levels[ba][0] if ba is not None else 0,
        )

    def _changed(self, ts: int, before: tuple) -> None:
        self.seq += 1
        self.out.book_changed = True
        if self.want_bbo and self._bbo_key() != before:
            self.out.bbo.append((ts, self.seq, self.top_level(True), self.top_level(False)))

    def _add(self, ts: int) -> None:
        rng = self.rng
        is_bid = rng.random() < 0.5
        side, other = (
            (self.book.bids, self.book.asks) if is_bid else (self.book.asks, self.book.bids)
        )
        best, obest = side.best(), other.best()
        if best is None or obest is None:
            return
        before = self._bbo_key()
        spread = abs(obest - best)
        if spread > 1 and rng.random() < 0.25:
            px = best + 1 if is_bid else best - 1  # improve the touch
        else:
            d = min(len(side.prices) - 1, int(rng.expovariate(1 / 6)))
            px = side.nth_from_best(d)
            if rng.random() < 0.3:  # a new price between levels
                px = px - 1 if is_bid else px + 1
                if (is_bid and px >= obest) or (not is_bid and px <= obest) or px <= 0:
                    return
        side.add(px, self._rand_size(), 1)
        self._changed(ts, before)

    def _cancel(self, ts: int) -> None:
        rng = self.rng
        side = self.book.bids if rng.random() < 0.5 else self.book.asks
        if len(side.prices) < 2:
            return
        before = self._bbo_key()
        px = side.nth_from_best(min(len(side.prices) - 1, int(rng.expovariate(1 / 12))))
        sz, cnt = side.levels[px]
        if cnt <= 1 or rng.random() < 0.2:
            side.delete(px)
        else:
            side.remove(px, max(1, int(sz * rng.random() / cnt)), 1)
        self._changed(ts, before)

    def take(self, is_buy: bool, qty: int, ts: int, limit_px: int | None = None) -> list[tuple]:
        """A taker order for qty units sweeping at most 6 levels (or to limit_px). Returns its fills."""
        side = self.book.asks if is_buy else self.book.bids
        before = self._bbo_key()
        fills: list[tuple] = []
        sname = "buy" if is_buy else "sell"
        seq = self.seq + 1
        swept = 0
        while qty > 0 and side.prices and swept < 6:
            px = side.best()
            assert px is not None
            if limit_px is not None and (px > limit_px if is_buy else px < limit_px):
                break
            lsz, lcnt = side.levels[px]
            take = min(qty, lsz)
            k = min(lcnt, 1 + int(self.rng.random() * 3), take)
            parts = [take // k] * k
            parts[-1] += take - sum(parts)
            for part in parts:
                fill = (self.next_trade_id, px, part, sname, ts)
                self.next_trade_id += 1
                fills.append(fill)
            self.out.aggs.append((fills[-1][0], px, take, sname, ts, k, seq))
            side.remove(px, take, k)
            qty -= take
            swept += 1
        if not fills:
            return fills
        self.out.fills.extend(fills)
        self._record(fills)
        self._changed(ts, before)
        return fills

    def _record(self, fills: list[tuple]) -> None:
        self.trades.extend(fills)
        if len(self.trades) > 2 * self.trade_history:
            del self.trades[: len(self.trades) - self.trade_history]
        # candles: one run per second bucket (bars >= 1s never split inside a second)
        run: list[tuple] = []
        for f in fills:
            if run and f[4] // 1000 != run[0][4] // 1000:
                self._candle_run(run)
                run = []
            run.append(f)
        self._candle_run(run)
        self.last_px, self.last_sz = fills[-1][1], fills[-1][2]

    def _candle_run(self, run: list[tuple]) -> None:
        pxs = [f[1] for f in run]
        vol = sum(f[2] for f in run)
        quote = sum(f[1] * f[2] for f in run)
        o, h, lo, c = pxs[0], max(pxs), min(pxs), pxs[-1]
        for series in self.candles.values():
            series.apply(run[0][4], o, h, lo, c, vol, quote)

    def drain(self) -> TickOut:
        out, self.out = self.out, TickOut()
        return out

    # ---------------------------------------------------------------- views
    def level(self, is_bid: bool, px: int) -> list[str]:
        lvl = self.book.side(is_bid).levels.get(px)
        if lvl is None:
            return [self.fpx(px), "0", "0", "0"]
        return [self.fpx(px), self.fsz(lvl[0]), "0", str(lvl[1])]

    def top_level(self, is_bid: bool) -> list[list[str]]:
        side = self.book.side(is_bid)
        px = side.best()
        if px is None:
            return []
        lvl = side.levels[px]
        return [[self.fpx(px), self.fsz(lvl[0]), "0", str(lvl[1])]]

    def levels(self, is_bid: bool, n: int) -> list[list[str]]:
        side = self.book.side(is_bid)
        fpx, fsz, lv = self.fpx, self.fsz, side.levels
        return [[fpx(p), fsz(lv[p][0]), "0", str(lv[p][1])] for p in side.top(n)]

    def trade_index(self, trade_id: int) -> int:
        """Position of trade_id in the ring (may be out of range)."""
        if not self.trades:
            return 0
        return trade_id - self.trades[0][0]
