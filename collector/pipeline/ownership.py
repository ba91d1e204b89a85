"""Which data is used: the connection that owns each (channel, instId), the dedupe of trades
seen twice, and the mark (time, id) that versions a record. Pure.

Ownership: each (channel, instId) belongs to the connection whose data is used. A replacement
connection (64008) takes over a book when it delivers a snapshot (its chain starts there), other
channels on its first push; trades and private channels are taken from every connection, trades
deduplicated by tradeId, which loses nothing while both overlap.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

from okx.records import Balance, Candle, Data, Order, Ticker, Trade

Key = tuple[str, str]


def record_mark(rec: Any) -> tuple[int, str]:
    """(exchange time ms, id) that versions a record, for watermarks and gap bounds."""
    t = type(rec)
    if t is Trade:
        return rec.ts, rec.tradeId
    if t is Ticker or t is Candle:
        return rec.ts, ""
    if t is Order:
        return rec.uTime, rec.ordId
    if t is Balance:
        return rec.uTime, rec.ccy
    return rec.uTime, rec.posId


def data_key(data: Data) -> Key:
    """(channel, instId), or (channel, instType) for the private channels subscribed by type."""
    arg = data.arg
    return data.channel, arg.get("instId") or arg.get("instType") or ""


def subscription_key(sub: tuple[Any, ...]) -> Key:
    """A subscription's (channel, instId, instType, ...) tuple -> its (channel, instId | instType)
    key, as data_key names its data."""
    return sub[0], sub[1] or sub[2] or ""


class Ownership:
    """Connection tokens (any hashable) that own each key, and who replaces whom."""

    def __init__(self) -> None:
        self.owner: dict[Key, Hashable] = {}
        self.successor: dict[Hashable, Hashable] = {}  # old conn -> its replacement
        self.overlap_dropped = 0

    def admits(self, key: Key, conn: Hashable, shared: bool, takes_over: bool) -> bool:
        """Whether data for `key` from `conn` is used. The first connection to deliver owns the
        key; `shared` data is used from any connection (the owner stays); the owner's
        replacement takes the key over with data that `takes_over`; the rest is an overlap,
        counted and dropped."""
        owner = self.owner.get(key)
        if owner is conn:
            return True
        if owner is None:
            self.owner[key] = conn
            return True
        if shared:
            return True
        if takes_over and self.successor.get(owner) is conn:
            self.owner[key] = conn
            return True
        self.overlap_dropped += 1
        return False

    def replacing(self, old: Hashable, new: Hashable) -> None:
        self.successor[old] = new

    def conn_closed(self, conn: Hashable, replaced_by: Hashable | None) -> list[Key]:
        """`conn` is gone: its keys move to `replaced_by`, or have no owner. Returns its keys."""
        self.successor.pop(conn, None)
        owned = [k for k, c in self.owner.items() if c is conn]
        for key in owned:
            if replaced_by is not None:
                self.owner[key] = replaced_by
            else:
                del self.owner[key]
        return owned


class TradeDedupe:
    """Trades already published, by (channel, instId): the first trades after a (re)subscribe
    repeat the last ones seen (OKX sends the latest trade on subscribe) and are dropped."""

    def __init__(self) -> None:
        self.last_trade: dict[Key, int] = {}
        self.duplicates = 0

    def new_trades(self, key: Key, trades: Sequence[Trade]) -> list[Trade]:
        """The trades of one frame whose tradeId is above every one published for `key`."""
        last = self.last_trade.get(key)
        out = []
        for rec in trades:
            tid = int(rec.tradeId)
            if last is not None and tid <= last:
                self.duplicates += 1
                continue
            last = tid
            out.append(rec)
        if last is not None:
            self.last_trade[key] = last
        return out
