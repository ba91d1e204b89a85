"""Candle series per bar, fed by per-tick trade runs; OKX bar names and alignment (§4.4)."""

from __future__ import annotations

from collections import deque

_S, _M, _H, _D = 1000, 60_000, 3_600_000, 86_400_000
_UTC8 = 8 * _H
_MONDAY = 3 * _D  # 1970-01-01 was a Thursday; OKX weeks start on Monday

# bar -> (length ms, alignment offset ms). Non-utc bars of 6H and up open at UTC+8.
BARS: dict[str, tuple[int, int]] = {
    "1s": (_S, 0),
    "1m": (_M, 0),
    "3m": (3 * _M, 0),
    "5m": (5 * _M, 0),
    "15m": (15 * _M, 0),
    "30m": (30 * _M, 0),
    "1H": (_H, 0),
    "2H": (2 * _H, 0),
    "4H": (4 * _H, 0),
    "6H": (6 * _H, _UTC8),
    "12H": (12 * _H, _UTC8),
    "1D": (_D, _UTC8),
    "2D": (2 * _D, _UTC8),
    "3D": (3 * _D, _UTC8),
    "5D": (5 * _D, _UTC8),
    "1W": (7 * _D, _UTC8 + _MONDAY),
    "6Hutc": (6 * _H, 0),
    "12Hutc": (12 * _H, 0),
    "1Dutc": (_D, 0),
    "2Dutc": (2 * _D, 0),
    "3Dutc": (3 * _D, 0),
    "5Dutc": (5 * _D, 0),
    "1Wutc": (7 * _D, _MONDAY),
}
KEEP_BARS = 2000


class CandleSeries:
    """Bars as lists [start, o, h, l, c, vol_units, quote_units]; the last one is forming."""

    __slots__ = ("length", "offset", "bars", "dirty", "closed")

    def __init__(self, bar: str) -> None:
        self.length, self.offset = BARS[bar]
        self.bars: deque[list[int]] = deque(maxlen=KEEP_BARS)
        self.dirty = False
        self.closed: list[list[int]] = []  # bars closed since the last push (sent confirm "1")

    def start_of(self, ts: int) -> int:
        return (ts + self.offset) // self.length * self.length - self.offset

    def roll(self, ts: int, seed_px: int) -> None:
        """Open the bar containing ts; flat bars (previous close, no volume) fill quiet periods."""
        start = self.start_of(ts)
        bars = self.bars
        if not bars:
            bars.append([start, seed_px, seed_px, seed_px, seed_px, 0, 0])
            self.dirty = True
            return
        last = bars[-1]
        if start <= last[0]:
            return
        if len(self.closed) < 8:
            self.closed.append(last)
        c = last[4]
        nxt = last[0] + self.length
        if (start - nxt) // self.length > KEEP_BARS:
            nxt = start - KEEP_BARS * self.length
        while nxt <= start:
            bars.append([nxt, c, c, c, c, 0, 0])
            nxt += self.length
        self.dirty = True

    def apply(self, ts: int, o: int, h: int, lo: int, c: int, vol: int, quote: int) -> None:
        self.roll(ts, o)
        bar = self.bars[-1]
        if bar[5] == 0:
            bar[1], bar[2], bar[3] = o, h, lo
        else:
            if h > bar[2]:
                bar[2] = h
            if lo < bar[3]:
                bar[3] = lo
        bar[4] = c
        bar[5] += vol
        bar[6] += quote
        self.dirty = True
