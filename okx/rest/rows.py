"""One OKX REST reply row -> one task payload (OKX field names and strings), checked on the way.

The paging fetchers in okx/rest/endpoints.py call these; each raises BadReply for a row OKX
does not document. Pure: no I/O.
"""

from __future__ import annotations

from typing import Any

from okx.errors import BadReply, RestError  # noqa: F401 - RestError: importable from here too
from okx.records import JsonObject, Payload

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


def trade_payload(row: Any, inst_id: str) -> Payload:
    """One history-trades row -> a trades record as the live trades-all channel gives it."""
    row = need_dict(row, "history-trades")
    as_int(row.get("tradeId"), "history-trades tradeId")
    as_int(row.get("ts"), "history-trades ts")
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
    if not isinstance(row, list) or len(row) < 9 or not all(isinstance(v, str) for v in row):
        raise BadReply(f"history-candles: row must be a list of 9 strings, got {str(row)[:80]}")
    as_int(row[0], "history-candles ts")
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
    row = need_dict(row, "orders-history")
    for key in ("instType", "instId", "ordId", "state", "cTime", "uTime"):
        need_str(row, key, "orders-history")
    as_int(row["ordId"], "orders-history ordId")
    as_int(row["cTime"], "orders-history cTime")
    as_int(row["uTime"], "orders-history uTime")
    return dict(row)


def fill_payload(row: Any) -> Payload:
    """A fills row as OKX sends it, plus source "rest" (tradeId is negative for liquidations)."""
    row = need_dict(row, "fills")
    for key in ("instId", "tradeId", "ordId", "billId", "fillPx", "fillSz", "side", "ts"):
        need_str(row, key, "fills")
    as_int(row["billId"], "fills billId")
    as_int(row["tradeId"], "fills tradeId")
    as_int(row["ts"], "fills ts")
    return {**row, "source": SOURCE}


def balance_payloads(row: Any) -> list[Payload]:
    """One /account/balance row (account totals + details per currency) -> balances records."""
    row = need_dict(row, "balance")
    details = row.get("details")
    if not isinstance(details, list):
        raise BadReply("balance: 'details' must be a list")
    account_utime = row.get("uTime")
    out: list[Payload] = []
    for detail in details:
        detail = need_dict(detail, "balance detail")
        ccy = need_str(detail, "ccy", "balance detail")
        cash = need_str(detail, "cashBal", "balance detail")
        utime = detail.get("uTime") or account_utime
        as_int(utime, f"balance {ccy} uTime")
        out.append({**detail, "ccy": ccy, "cashBal": cash, "uTime": utime, "source": SOURCE})
    return out


def position_payload(row: Any) -> Payload:
    row = need_dict(row, "positions")
    for key in ("posId", "instId", "instType", "pos", "uTime"):
        need_str(row, key, "positions")
    as_int(row["uTime"], "positions uTime")
    return {**row, "source": SOURCE}


def book_payload(row: Any, inst_id: str, depth: int) -> Payload:
    """A /market/books row -> a books record (channel "books", full True)."""
    row = need_dict(row, "books")
    asks, bids = row.get("asks"), row.get("bids")
    if not isinstance(asks, list) or not isinstance(bids, list):
        raise BadReply("books: asks and bids must be lists")
    for level in (*asks, *bids):
        if (
            not isinstance(level, list)
            or len(level) < 2
            or not all(isinstance(v, str) for v in level)
        ):
            raise BadReply(f"books: a level must be a list of strings, got {str(level)[:60]}")
    ts = need_str(row, "ts", "books")
    as_int(ts, "books ts")
    seq = row.get("seqId")
    if seq is not None:
        if isinstance(seq, bool) or not isinstance(seq, (int, str)):
            raise BadReply(f"books: seqId must be an integer, got {seq!r}")
        seq = seq if isinstance(seq, int) else as_int(seq, "books seqId")
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
    row = need_dict(row, "ticker")
    as_int(row.get("ts"), "ticker ts")
    if row.get("instId") != inst_id:
        raise BadReply(f"ticker: asked for {inst_id}, got {row.get('instId')!r}")
    return {**row, "source": SOURCE}
