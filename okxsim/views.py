"""Render market state as OKX JSON records (shared by the WS publisher and REST)."""

from __future__ import annotations

from .market import Market

HOUR = 3_600_000


def trade_all(m: Market, f: tuple) -> dict:
    """One fill as trades-all / history-trades / truth record."""
    return {
        "instId": m.inst_id,
        "tradeId": str(f[0]),
        "px": m.fpx(f[1]),
        "sz": m.fsz(f[2]),
        "side": f[3],
        "source": "0",
        "ts": str(f[4]),
    }


def trade_agg(m: Market, a: tuple) -> dict:
    """One `trades` push: a taker order at one price; tradeId is the last id, count the fills."""
    return {
        "instId": m.inst_id,
        "tradeId": str(a[0]),
        "px": m.fpx(a[1]),
        "sz": m.fsz(a[2]),
        "side": a[3],
        "ts": str(a[4]),
        "count": str(a[5]),
        "source": "0",
        "seqId": a[6],
    }


def candle_row(m: Market, bar: list[int], confirm: str) -> list[str]:
    vol = m.fsz(bar[5])
    quote = m.fquote(bar[6])
    return [
        str(bar[0]),
        m.fpx(bar[1]),
        m.fpx(bar[2]),
        m.fpx(bar[3]),
        m.fpx(bar[4]),
        vol,
        quote,
        quote,
        confirm,
    ]


def ticker(m: Market, now_ms: int) -> dict:
    b, a = m.book.bids, m.book.asks
    bb, ba = b.best(), a.best()
    hours = m.candles["1H"].bars
    since = now_ms - 24 * HOUR
    recent = [bar for bar in hours if bar[0] >= since - HOUR] or [
        [0, m.last_px, m.last_px, m.last_px, m.last_px, 0, 0]
    ]
    d_utc = m.candles["1Dutc"].bars
    d_8 = m.candles["1D"].bars
    return {
        "instType": "SPOT",
        "instId": m.inst_id,
        "last": m.fpx(m.last_px),
        "lastSz": m.fsz(m.last_sz),
        "askPx": m.fpx(ba) if ba is not None else "",
        "askSz": m.fsz(a.levels[ba][0]) if ba is not None else "",
        "bidPx": m.fpx(bb) if bb is not None else "",
        "bidSz": m.fsz(b.levels[bb][0]) if bb is not None else "",
        "open24h": m.fpx(recent[0][1]),
        "high24h": m.fpx(max(bar[2] for bar in recent)),
        "low24h": m.fpx(min(bar[3] for bar in recent)),
        "volCcy24h": m.fquote(sum(bar[6] for bar in recent)),
        "vol24h": m.fsz(sum(bar[5] for bar in recent)),
        "sodUtc0": m.fpx(d_utc[-1][1] if d_utc else m.last_px),
        "sodUtc8": m.fpx(d_8[-1][1] if d_8 else m.last_px),
        "ts": str(now_ms),
    }


def instrument(m: Market) -> dict:
    s = m.spec
    return {
        "instType": "SPOT",
        "instId": s.inst_id,
        "uly": "",
        "instFamily": "",
        "baseCcy": s.base,
        "quoteCcy": s.quote,
        "settleCcy": "",
        "ctVal": "",
        "ctMult": "",
        "ctValCcy": "",
        "optType": "",
        "stk": "",
        "listTime": "1548133413000",
        "expTime": "",
        "lever": "10",
        "tickSz": s.tick_sz,
        "lotSz": s.lot_sz,
        "minSz": s.lot_sz,
        "ctType": "",
        "alias": "",
        "state": "live",
        "maxLmtSz": "99999999999",
        "maxMktSz": "1000000",
        "ruleType": "normal",
    }
