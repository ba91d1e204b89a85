"""One OKX REST reply row -> one task payload (OKX field names and strings), checked on the way.

The paging fetchers in okx/rest/endpoints.py call these; each raises BadReply for a row OKX
does not document. Pure: no I/O.
"""

from __future__ import annotations

from typing import Any

from okx.errors import BadReply, RestError  # noqa: F401 - RestError: importable from here too
from okx.records import JsonObject, Payload
from okx.schemas import (
    ACCOUNT,
    BALANCE,
    BOOK,
    FILL,
    ORDER,
    POSITION,
    TICKER,
    TRADE,
    Schema,
    check,
    check_candle,
    check_levels,
)

SOURCE = "rest"  # the `source` of every record fetched over REST


def as_int(value: Any, what: str) -> int:
    """An OKX id or millisecond time (a string of digits, maybe signed) as an int; BadReply when
    it is anything else (floats, bools, '', '12a')."""
    if isinstance(value, str):
        body = value[1:] if value[:1] == "-" else value
        if body.isdigit() and body.isascii():
            return int(value)
    raise BadReply(f"{what} must be a string of digits, got {str(value)[:40]!r}")


def need_dict(row: Any, what: str) -> JsonObject:
    if not isinstance(row, dict):
        raise BadReply(f"{what}: row must be an object, got {type(row).__name__}")
    return row


def need_str(row: JsonObject, key: str, what: str) -> str:
    value = row.get(key)
    if not isinstance(value, str):
        raise BadReply(f"{what}: field {key!r} must be a string, got {str(value)[:40]!r}")
    return value


def checked(schema: Schema, row: Any, what: str) -> JsonObject:
    """`row` if it satisfies the shared schema of its kind (okx/schemas.py, the same one the
    WebSocket parser uses), else BadReply naming the endpoint, the field and the rule."""
    reason = check(schema, row)
    if reason is not None:
        raise BadReply(f"{what}: {reason}")
    return row  # type: ignore[no-any-return]  # check() made sure it is an object


def trade_payload(row: Any, inst_id: str) -> Payload:
    """One history-trades row -> a trades record as the live trades-all channel gives it."""
    row = checked(TRADE, row, "history-trades")
    rec = {k: need_str(row, k, "history-trades") for k in ("tradeId", "px", "sz", "side", "ts")}
    if row.get("instId", inst_id) != inst_id:
        raise BadReply(f"history-trades: asked for {inst_id}, got a row of {row.get('instId')!r}")
    return {
        "instId": inst_id,
        **rec,
        "count": "1",
        "source": SOURCE,
        "seqId": None,
        "channel": "trades-all",
    }


def candle_payload(row: Any, inst_id: str, bar: str) -> Payload:
    """[ts, o, h, l, c, vol, volCcy, volCcyQuote, confirm] -> a candles record."""
    reason = check_candle(row, 9)
    if reason is not None:
        raise BadReply(f"history-candles: {reason}, got {str(row)[:80]}")
    return {
        "instId": inst_id,
        "bar": bar,
        "ts": row[0],
        "o": row[1],
        "h": row[2],
        "l": row[3],
        "c": row[4],
        "vol": row[5],
        "volCcy": row[6],
        "volCcyQuote": row[7],
        "confirm": row[8],
    }


def order_payload(row: Any) -> Payload:
    """An orders-history row, kept whole (OKX's own `source` field included)."""
    return dict(checked(ORDER, row, "orders-history"))


def fill_payload(row: Any) -> Payload:
    """A fills row as OKX sends it, plus source "rest" (tradeId is negative for liquidations)."""
    row = checked(FILL, row, "fills")
    return {**row, "source": SOURCE}


def balance_payloads(row: Any) -> list[Payload]:
    """One /account/balance row (account totals + details per currency) -> balances records."""
    row = checked(ACCOUNT, row, "balance")
    account_utime = row.get("uTime")
    out: list[Payload] = []
    for detail in row["details"]:
        # the account channel's detail schema: the two paths accept exactly the same detail
        detail = checked(BALANCE, detail, "balance detail")
        ccy = detail["ccy"]
        utime = detail.get("uTime") or account_utime
        as_int(utime, f"balance {ccy} uTime")
        out.append({**detail, "uTime": utime, "source": SOURCE})
    return out


def position_payload(row: Any) -> Payload:
    row = checked(POSITION, row, "positions")
    return {**row, "source": SOURCE}


def book_payload(row: Any, inst_id: str, depth: int) -> Payload:
    """A /market/books row -> a books record (channel "books", full True)."""
    row = need_dict(row, "books")
    seq = row.get("seqId")
    if isinstance(seq, str):  # REST may spell it as a string: the same integer
        row = {**row, "seqId": as_int(seq, "books seqId")}
    row = checked(BOOK, row, "books")
    asks, bids, ts, seq = row["asks"], row["bids"], row["ts"], row.get("seqId")
    reason = check_levels(asks, "asks") or check_levels(bids, "bids")
    if reason is not None:
        raise BadReply(f"books: {reason}")
    return {
        "instId": inst_id,
        "channel": "books",
        "ts": ts,
        "seqId": seq,
        "asks": asks,
        "bids": bids,
        "depth": depth,
        "full": True,
        "source": SOURCE,
    }


def ticker_payload(row: Any, inst_id: str) -> Payload:
    """A /market/ticker row, kept whole, plus source "rest"."""
    row = checked(TICKER, row, "ticker")
    if row.get("instId") != inst_id:
        raise BadReply(f"ticker: asked for {inst_id}, got {row.get('instId')!r}")
    return {**row, "source": SOURCE}
