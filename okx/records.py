"""Typed records parsed from OKX frames and REST pages.

Prices, sizes and ids stay the exact strings OKX sent (floats would lose digits and break the
checksum); times are integer milliseconds. Each record turns into a task payload with
`to_payload()`: a plain dict with OKX's field names and OKX's string values, which is what the
workers store ("every field string-typed as OKX sends it").

The classes are slotted dataclasses but not frozen: a frozen dataclass sets each field through
``object.__setattr__``, which costs about 1.8 us per 9-field record on this machine against
0.4 us, and the feeder builds one or two per frame. Treat records as immutable all the same:
nothing in the collector changes a record after the parser made it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# One book level, [price, size, "0", orderCount], exactly as received. The parsers check that
# price and size are strings (the only fields anything reads); the rest is OKX's, passed on.
Level = list[str]
JsonObject = dict[str, Any]  # one decoded JSON object as OKX sent it, its values not yet checked
Payload = dict[str, Any]  # a record as a task payload: OKX's field names and string values


@dataclass(slots=True)
class BookData:
    """One order-book push: books, books5, bbo-tbt, books50-l2-tbt or books-l2-tbt."""

    channel: str
    instId: str
    action: str | None  # "snapshot" | "update" for incremental channels; None for books5/bbo-tbt
    asks: list[Level]
    bids: list[Level]
    ts: int
    seqId: int | None
    prevSeqId: int | None
    checksum: int | None  # None when the field is absent (OKX dropped it in 2026)


@dataclass(slots=True)
class Trade:
    channel: str  # "trades" (aggregated per taker order) or "trades-all"; "rest" for backfill
    instId: str
    tradeId: str
    px: str
    sz: str
    side: str
    ts: int
    count: str = "1"
    source: str = "0"
    seqId: int | None = None

    def to_payload(self) -> Payload:
        return {
            "instId": self.instId,
            "tradeId": self.tradeId,
            "px": self.px,
            "sz": self.sz,
            "side": self.side,
            "ts": str(self.ts),
            "count": self.count,
            "source": self.source,
            "seqId": self.seqId,
            "channel": self.channel,
        }


TICKER_FIELDS = (
    "instType",
    "instId",
    "last",
    "lastSz",
    "askPx",
    "askSz",
    "bidPx",
    "bidSz",
    "open24h",
    "high24h",
    "low24h",
    "volCcy24h",
    "vol24h",
    "sodUtc0",
    "sodUtc8",
)


@dataclass(slots=True)
class Ticker:
    instId: str
    ts: int
    fields: dict[str, str]  # every ticker field as received (bidPx/askPx may be "")

    def to_payload(self) -> Payload:
        return {**self.fields, "instId": self.instId, "ts": str(self.ts)}


@dataclass(slots=True)
class Candle:
    instId: str
    bar: str  # "1m", "1H", "1Dutc", ... (case matters: 1m is a minute, 1M a month)
    ts: int  # bar open time
    o: str
    h: str
    l: str  # noqa: E741 - OKX's name
    c: str
    vol: str
    volCcy: str
    volCcyQuote: str
    confirm: str  # "1" = bar closed, "0" = still forming

    def to_payload(self) -> Payload:
        return {
            "instId": self.instId,
            "bar": self.bar,
            "ts": str(self.ts),
            "o": self.o,
            "h": self.h,
            "l": self.l,
            "c": self.c,
            "vol": self.vol,
            "volCcy": self.volCcy,
            "volCcyQuote": self.volCcyQuote,
            "confirm": self.confirm,
        }


@dataclass(slots=True)
class Order:
    instType: str
    instId: str
    ordId: str
    state: str
    uTime: int
    cTime: int
    fields: JsonObject = field(repr=False)  # the whole OKX order record as received

    def to_payload(self) -> Payload:
        return dict(self.fields)


@dataclass(slots=True)
class Balance:
    ccy: str
    cashBal: str
    uTime: int
    source: str  # "balance_and_position", "account" or "rest"
    fields: JsonObject = field(repr=False)

    def to_payload(self) -> Payload:
        return {
            **self.fields,
            "ccy": self.ccy,
            "cashBal": self.cashBal,
            "uTime": str(self.uTime),
            "source": self.source,
        }


@dataclass(slots=True)
class Position:
    posId: str
    instId: str
    instType: str
    pos: str
    uTime: int
    source: str  # "balance_and_position", "positions" or "rest"
    fields: JsonObject = field(repr=False)

    def to_payload(self) -> Payload:
        return {
            **self.fields,
            "posId": self.posId,
            "instId": self.instId,
            "instType": self.instType,
            "pos": self.pos,
            "uTime": str(self.uTime),
            "source": self.source,
        }


# What a parser makes of one data item (account and balance_and_position items make several).
Record = BookData | Trade | Ticker | Candle | Order | Balance | Position


# ----- results of parsing one frame -------------------------------------------------------------


@dataclass(slots=True)
class Data:
    """A data push: `{"arg": {...}, "data": [...]}`, parsed into records."""

    channel: str
    arg: JsonObject
    # All of one record type, the channel's (BookData for books, Trade for trades, ...): callers
    # look at records[0] once and read the rest as that type, which a union element type would
    # make them re-check per record on the hot path. `Record` names the possible types.
    records: tuple[Any, ...]
    event_type: str | None = (
        None  # account/positions/balance_and_position: snapshot, event_update, ...
    )
    cur_page: int | None = None
    last_page: bool | None = None


@dataclass(slots=True)
class Event:
    """A control frame: login, subscribe, unsubscribe, error, notice, channel-conn-count(-error)."""

    event: str
    code: str | None = None
    msg: str | None = None
    arg: JsonObject | None = None
    conn_id: str | None = None
    id: str | None = None
    conn_count: str | None = None


@dataclass(slots=True)
class Pong:
    """The plain-text keepalive answer."""


@dataclass(slots=True)
class ParseError:
    """A frame that could not be understood: malformed JSON, missing or mistyped fields."""

    reason: str
    raw: str


@dataclass(slots=True)
class Unknown:
    """Well-formed, but a channel or event this collector does not know."""

    reason: str
    raw: str
