"""Parse one received OKX WebSocket frame into a typed result. Pure: no I/O, no clock.

`parse_frame(text)` never raises. It returns one of:
    Data       a data push, its items turned into records (records.py)
    Event      a control frame (login, subscribe, unsubscribe, error, notice, channel-conn-count...)
    Pong       the plain-text keepalive answer
    ParseError malformed JSON, missing or mistyped fields, binary junk: with the reason
    Unknown    well-formed but an unknown channel or event: with the reason

A data frame is all-or-nothing: if one item is malformed the whole frame is a ParseError, so a
caller never stores half a frame and believes it complete.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import orjson

from okx.channels import CANDLE_BARS, BOOK_CHANNELS
from okx.records import (
    Balance, BookData, Candle, Data, Event, JsonObject, Level, Order, ParseError, Pong, Position,
    Record, Ticker, TICKER_FIELDS, Trade, Unknown,
)

KNOWN_EVENTS = frozenset({
    "login", "subscribe", "unsubscribe", "error", "notice",
    "channel-conn-count", "channel-conn-count-error",
})

_RAW_LIMIT = 300  # how much of a bad frame to keep for the log line
_PUSHED_BOOKS = frozenset({"books5", "bbo-tbt"})  # every push is the whole (short) book


class _Bad(Exception):
    """Internal: one item of a frame is malformed. Never escapes this module."""


# (arg, item, frame) -> the item's record(s). `item` is a JSON object, except for candles (a
# list of strings); each parser checks the shape it needs.
ItemParser = Callable[[JsonObject, Any, JsonObject], Record | Sequence[Record]]


def _clip(raw: str | bytes) -> str:
    if isinstance(raw, (bytes, bytearray, memoryview)):
        raw = bytes(raw[:_RAW_LIMIT]).decode("utf-8", errors="replace")
    return raw[:_RAW_LIMIT]


# ----- field readers: each raises _Bad with a reason a person can act on -----------------------

def _s(item: JsonObject, key: str) -> str:
    value = item.get(key)
    if type(value) is not str:
        if value is None:
            raise _Bad(f"missing field {key!r}")
        raise _Bad(f"field {key!r} must be a string, got {type(value).__name__}")
    return value


def _s_opt(item: JsonObject, key: str, default: str) -> str:
    value = item.get(key, default)
    if type(value) is not str:
        raise _Bad(f"field {key!r} must be a string, got {type(value).__name__}")
    return value


def _ms(item: JsonObject, key: str) -> int:
    value = _s(item, key)
    if not value.isdigit():
        raise _Bad(f"field {key!r} must be integer milliseconds, got {value[:40]!r}")
    return int(value)


def _ms_or_zero(item: JsonObject, key: str) -> int:
    """Times that OKX may send as "" (e.g. an order's fillTime before any fill)."""
    value = item.get(key, "")
    if value == "":
        return 0
    if type(value) is not str or not value.isdigit():
        raise _Bad(f"field {key!r} must be integer milliseconds, got {str(value)[:40]!r}")
    return int(value)


def _int_opt(item: JsonObject, key: str) -> int | None:
    value = item.get(key)
    if value is None:
        return None
    if type(value) is not int:  # bool is not int here: type() is exact
        raise _Bad(f"field {key!r} must be an integer, got {type(value).__name__}")
    return value


def _levels(item: JsonObject, key: str) -> list[Level]:
    levels = item.get(key)
    if type(levels) is not list:
        raise _Bad(f"field {key!r} must be a list of levels")
    for level in levels:
        if type(level) is not list or len(level) < 2 or type(level[0]) is not str \
                or type(level[1]) is not str:
            raise _Bad(f"bad level in {key!r}: {str(level)[:60]}")
    return levels


def _strings_only(item: JsonObject) -> JsonObject:
    """Private records: keep every field, but they must be strings (or lists/dicts OKX nests)."""
    for key, value in item.items():
        if value is not None and not isinstance(value, (str, list, dict)):
            raise _Bad(f"field {key!r} must be a string, got {type(value).__name__}")
    return item


# ----- per-channel item parsers ------------------------------------------------------------------

def _book(arg: JsonObject, item: JsonObject, frame: JsonObject) -> BookData:
    channel = arg["channel"]
    action = frame.get("action")
    if channel in _PUSHED_BOOKS:
        action = None
    elif action != "update" and action != "snapshot":
        raise _Bad(f"book frame action must be 'snapshot' or 'update', got {action!r}")
    get = item.get
    inst_id = get("instId") or arg.get("instId")
    if type(inst_id) is not str:
        raise _Bad("book frame has no instId")
    asks = get("asks")
    bids = get("bids")
    ts = get("ts")
    seq = get("seqId")
    prev = get("prevSeqId")
    cs = get("checksum")
    # Fast path: everything well-typed (the checked readers below give the precise reason).
    if (type(asks) is list and type(bids) is list and type(ts) is str and ts.isdigit()
            and (seq is None or type(seq) is int) and (prev is None or type(prev) is int)
            and (cs is None or type(cs) is int)):
        for level in asks:
            if type(level) is not list or len(level) < 2 or type(level[0]) is not str \
                    or type(level[1]) is not str:
                raise _Bad(f"bad level in 'asks': {str(level)[:60]}")
        for level in bids:
            if type(level) is not list or len(level) < 2 or type(level[0]) is not str \
                    or type(level[1]) is not str:
                raise _Bad(f"bad level in 'bids': {str(level)[:60]}")
        return BookData(channel, inst_id, action, asks, bids, int(ts), seq, prev, cs)
    return BookData(channel, inst_id, action, _levels(item, "asks"), _levels(item, "bids"),
                    _ms(item, "ts"), _int_opt(item, "seqId"), _int_opt(item, "prevSeqId"),
                    _int_opt(item, "checksum"))


def _trade(arg: JsonObject, item: JsonObject, frame: JsonObject) -> Trade:
    get = item.get
    inst_id = get("instId")
    trade_id = get("tradeId")
    px = get("px")
    sz = get("sz")
    side = get("side")
    ts = get("ts")
    count = get("count", "1")
    source = get("source", "0")
    seq = get("seqId")
    if (type(inst_id) is str and type(trade_id) is str and type(px) is str and type(sz) is str
            and type(side) is str and type(ts) is str and ts.isdigit() and type(count) is str
            and type(source) is str and (seq is None or type(seq) is int)):
        return Trade(arg["channel"], inst_id, trade_id, px, sz, side, int(ts), count, source, seq)
    # Something is off: the checked readers name the field.
    return Trade(
        channel=arg["channel"], instId=_s(item, "instId"), tradeId=_s(item, "tradeId"),
        px=_s(item, "px"), sz=_s(item, "sz"), side=_s(item, "side"), ts=_ms(item, "ts"),
        count=_s_opt(item, "count", "1"), source=_s_opt(item, "source", "0"),
        seqId=_int_opt(item, "seqId"),
    )


def _ticker(arg: JsonObject, item: JsonObject, frame: JsonObject) -> Ticker:
    fields = {}
    for key in TICKER_FIELDS:
        if key in item:
            fields[key] = _s(item, key)
    return Ticker(instId=_s(item, "instId"), ts=_ms(item, "ts"), fields=fields)


def _candle_parser(bar: str) -> ItemParser:
    def parse(arg: JsonObject, item: Any, frame: JsonObject) -> Candle:
        # [ts, o, h, l, c, vol, volCcy, volCcyQuote, confirm]; older payloads had 7 fields, newer
        # ones may add more: read by index and ignore the rest.
        if type(item) is not list or len(item) < 7 or not all(type(v) is str for v in item):
            raise _Bad(f"candle must be a list of at least 7 strings, got {str(item)[:80]}")
        if not item[0].isdigit():
            raise _Bad(f"candle ts must be integer milliseconds, got {item[0][:40]!r}")
        inst_id = arg.get("instId")
        if type(inst_id) is not str:
            raise _Bad("candle frame has no instId in arg")
        return Candle(
            instId=inst_id, bar=bar, ts=int(item[0]), o=item[1], h=item[2], l=item[3], c=item[4],
            vol=item[5], volCcy=item[6], volCcyQuote=item[7] if len(item) > 7 else "",
            confirm=item[8] if len(item) > 8 else "0",
        )
    return parse


def _order(arg: JsonObject, item: JsonObject, frame: JsonObject) -> Order:
    _strings_only(item)
    return Order(
        instType=_s(item, "instType"), instId=_s(item, "instId"), ordId=_s(item, "ordId"),
        state=_s(item, "state"), uTime=_ms(item, "uTime"), cTime=_ms(item, "cTime"), fields=item,
    )


def _position(item: JsonObject, source: str) -> Position:
    _strings_only(item)
    return Position(
        posId=_s(item, "posId"), instId=_s(item, "instId"), instType=_s(item, "instType"),
        pos=_s(item, "pos"), uTime=_ms(item, "uTime"), source=source, fields=item,
    )


def _positions(arg: JsonObject, item: JsonObject, frame: JsonObject) -> Position:
    return _position(item, "positions")


def _account(arg: JsonObject, item: JsonObject, frame: JsonObject) -> list[Balance]:
    details = item.get("details")
    if type(details) is not list:
        raise _Bad("account item has no 'details' list")
    account_utime = _ms_or_zero(item, "uTime")
    balances: list[Balance] = []
    for detail in details:
        if type(detail) is not dict:
            raise _Bad("account detail must be an object")
        _strings_only(detail)
        utime = _ms_or_zero(detail, "uTime") or account_utime
        if not utime:
            raise _Bad("account detail has no uTime")
        balances.append(Balance(ccy=_s(detail, "ccy"), cashBal=_s(detail, "cashBal"),
                                uTime=utime, source="account", fields=detail))
    return balances


def _balance_and_position(arg: JsonObject, item: JsonObject, frame: JsonObject
                          ) -> list[Record]:
    records: list[Record] = []
    p_time = _ms_or_zero(item, "pTime")
    for bal in item.get("balData") or ():
        if type(bal) is not dict:
            raise _Bad("balData entry must be an object")
        _strings_only(bal)
        utime = _ms_or_zero(bal, "uTime") or p_time
        records.append(Balance(ccy=_s(bal, "ccy"), cashBal=_s(bal, "cashBal"), uTime=utime,
                               source="balance_and_position", fields=bal))
    for pos in item.get("posData") or ():
        if type(pos) is not dict:
            raise _Bad("posData entry must be an object")
        records.append(_position(pos, "balance_and_position"))
    return records


_ITEM_PARSERS: dict[str, ItemParser] = {
    **{name: _book for name in BOOK_CHANNELS},
    "trades": _trade,
    "trades-all": _trade,
    "tickers": _ticker,
    "orders": _order,
    "positions": _positions,
    "account": _account,
    "balance_and_position": _balance_and_position,
    **{f"candle{bar}": _candle_parser(bar) for bar in CANDLE_BARS},
}


# ----- frames ------------------------------------------------------------------------------------

def _event(obj: JsonObject) -> Event:
    code = obj.get("code")
    return Event(
        event=obj["event"],
        code=None if code is None else str(code),
        msg=obj.get("msg") if isinstance(obj.get("msg"), str) else None,
        arg=obj.get("arg") if isinstance(obj.get("arg"), dict) else None,
        conn_id=obj.get("connId") if isinstance(obj.get("connId"), str) else None,
        id=obj.get("id") if isinstance(obj.get("id"), str) else None,
        conn_count=obj.get("connCount") if isinstance(obj.get("connCount"), str) else None,
    )


def parse_frame(raw: str | bytes) -> Data | Event | Pong | ParseError | Unknown:
    if raw == "pong" or raw == b"pong":
        return Pong()
    try:
        obj = orjson.loads(raw)
    except (orjson.JSONDecodeError, TypeError) as exc:
        return ParseError(f"malformed JSON: {exc}", _clip(raw))
    if type(obj) is not dict:
        return ParseError(f"frame must be a JSON object, got {type(obj).__name__}", _clip(raw))

    if "event" in obj:
        event = obj["event"]
        if type(event) is not str:
            return ParseError("'event' must be a string", _clip(raw))
        if event not in KNOWN_EVENTS:
            return Unknown(f"unknown event {event!r}", _clip(raw))
        return _event(obj)

    arg = obj.get("arg")
    if type(arg) is not dict:
        return ParseError("frame has neither 'event' nor an 'arg' object", _clip(raw))
    channel = arg.get("channel")
    if type(channel) is not str:
        return ParseError("arg has no channel", _clip(raw))
    parser = _ITEM_PARSERS.get(channel)
    if parser is None:
        return Unknown(f"unknown channel {channel!r}", _clip(raw))
    data = obj.get("data")
    if type(data) is not list:
        return ParseError(f"{channel} frame has no 'data' list", _clip(raw))

    try:
        if len(obj) == 2 and len(data) == 1 and type(data[0]) is dict:
            # The common push: {"arg", "data": [one object]} and nothing else, so there are no
            # paging or eventType fields to check. Parsers that return a list (account,
            # balance_and_position, whose eventType comes from the item) take the full path.
            parsed = parser(arg, data[0], obj)
            if type(parsed) is not list:
                return Data(channel, arg, (parsed,), None, None, None)
    except _Bad as bad:
        return ParseError(f"{channel}: {bad}", _clip(raw))
    # Records; Any because mypy cannot narrow `parsed` to a Record in the else branch below
    # (`type(parsed) is list` narrows only its own branch, and isinstance() would cost a call
    # per item). Data.records is tuple[Any, ...] anyway (see okx/records.py).
    records: list[Any] = []
    try:
        for item in data:
            if type(item) is not dict and not channel.startswith("candle"):
                raise _Bad("data item must be an object")
            parsed = parser(arg, item, obj)
            if type(parsed) is list:
                records.extend(parsed)
            else:
                records.append(parsed)
        cur_page = obj.get("curPage")
        if cur_page is not None and type(cur_page) is not int:
            cur_page = _int_opt(obj, "curPage")  # raises with the reason
        last_page = obj.get("lastPage")
        if last_page is not None and type(last_page) is not bool:
            raise _Bad("'lastPage' must be a boolean")
        event_type = obj.get("eventType")
        if event_type is None and channel == "balance_and_position" and data:
            event_type = data[0].get("eventType")
        if event_type is not None and type(event_type) is not str:
            raise _Bad("'eventType' must be a string")
    except _Bad as bad:
        return ParseError(f"{channel}: {bad}", _clip(raw))
    return Data(channel, arg, tuple(records), event_type, cur_page, last_page)
