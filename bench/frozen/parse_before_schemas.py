"""FROZEN COPY (git: layout, before okx/schemas.py) for bench/parse.py; not maintained.
Parse one received OKX WebSocket frame into a typed result. Pure: no I/O, no clock.

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

from bench.frozen.parse_fields_before_schemas import (
    BadField,
    clip,
    levels_of,
    ms_or_zero,
    opt_int,
    opt_str,
    req_ms,
    req_str,
    strings_only,
)
from okx.channels import BOOK_CHANNELS, CANDLE_BARS
from okx.records import (
    TICKER_FIELDS,
    Balance,
    BookData,
    Candle,
    Data,
    Event,
    JsonObject,
    Order,
    ParseError,
    Pong,
    Position,
    Record,
    Ticker,
    Trade,
    Unknown,
)

KNOWN_EVENTS = frozenset(
    {
        "login",
        "subscribe",
        "unsubscribe",
        "error",
        "notice",
        "channel-conn-count",
        "channel-conn-count-error",
    }
)

_PUSHED_BOOKS = frozenset({"books5", "bbo-tbt"})  # every push is the whole (short) book


# (arg, item, frame) -> the item's record(s). `item` is a JSON object, except for candles (a
# list of strings); each parser checks the shape it needs.
ItemParser = Callable[[JsonObject, Any, JsonObject], Record | Sequence[Record]]


# ----- field readers: each raises BadField with a reason a person can act on -----------------------


# ----- per-channel item parsers ------------------------------------------------------------------


def _book(arg: JsonObject, item: JsonObject, frame: JsonObject) -> BookData:
    channel = arg["channel"]
    action = frame.get("action")
    if channel in _PUSHED_BOOKS:
        action = None
    elif action != "update" and action != "snapshot":
        raise BadField(f"book frame action must be 'snapshot' or 'update', got {action!r}")
    get = item.get
    inst_id = get("instId") or arg.get("instId")
    if type(inst_id) is not str:
        raise BadField("book frame has no instId")
    asks = get("asks")
    bids = get("bids")
    ts = get("ts")
    seq = get("seqId")
    prev = get("prevSeqId")
    cs = get("checksum")
    # Fast path: everything well-typed (the checked readers below give the precise reason).
    if (
        type(asks) is list
        and type(bids) is list
        and type(ts) is str
        and ts.isdigit()
        and (seq is None or type(seq) is int)
        and (prev is None or type(prev) is int)
        and (cs is None or type(cs) is int)
    ):
        for level in asks:
            if (
                type(level) is not list
                or len(level) < 2
                or type(level[0]) is not str
                or type(level[1]) is not str
            ):
                raise BadField(f"bad level in 'asks': {str(level)[:60]}")
        for level in bids:
            if (
                type(level) is not list
                or len(level) < 2
                or type(level[0]) is not str
                or type(level[1]) is not str
            ):
                raise BadField(f"bad level in 'bids': {str(level)[:60]}")
        return BookData(channel, inst_id, action, asks, bids, int(ts), seq, prev, cs)
    return BookData(
        channel,
        inst_id,
        action,
        levels_of(item, "asks"),
        levels_of(item, "bids"),
        req_ms(item, "ts"),
        opt_int(item, "seqId"),
        opt_int(item, "prevSeqId"),
        opt_int(item, "checksum"),
    )


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
    if (
        type(inst_id) is str
        and type(trade_id) is str
        and type(px) is str
        and type(sz) is str
        and type(side) is str
        and type(ts) is str
        and ts.isdigit()
        and type(count) is str
        and type(source) is str
        and (seq is None or type(seq) is int)
    ):
        return Trade(arg["channel"], inst_id, trade_id, px, sz, side, int(ts), count, source, seq)
    # Something is off: the checked readers name the field.
    return Trade(
        channel=arg["channel"],
        instId=req_str(item, "instId"),
        tradeId=req_str(item, "tradeId"),
        px=req_str(item, "px"),
        sz=req_str(item, "sz"),
        side=req_str(item, "side"),
        ts=req_ms(item, "ts"),
        count=opt_str(item, "count", "1"),
        source=opt_str(item, "source", "0"),
        seqId=opt_int(item, "seqId"),
    )


def _ticker(arg: JsonObject, item: JsonObject, frame: JsonObject) -> Ticker:
    fields = {}
    for key in TICKER_FIELDS:
        if key in item:
            fields[key] = req_str(item, key)
    return Ticker(instId=req_str(item, "instId"), ts=req_ms(item, "ts"), fields=fields)


def _candle_parser(bar: str) -> ItemParser:
    def parse(arg: JsonObject, item: Any, frame: JsonObject) -> Candle:
        # [ts, o, h, l, c, vol, volCcy, volCcyQuote, confirm]; older payloads had 7 fields, newer
        # ones may add more: read by index and ignore the rest.
        if type(item) is not list or len(item) < 7 or not all(type(v) is str for v in item):
            raise BadField(f"candle must be a list of at least 7 strings, got {str(item)[:80]}")
        if not item[0].isdigit():
            raise BadField(f"candle ts must be integer milliseconds, got {item[0][:40]!r}")
        inst_id = arg.get("instId")
        if type(inst_id) is not str:
            raise BadField("candle frame has no instId in arg")
        return Candle(
            instId=inst_id,
            bar=bar,
            ts=int(item[0]),
            o=item[1],
            h=item[2],
            l=item[3],
            c=item[4],
            vol=item[5],
            volCcy=item[6],
            volCcyQuote=item[7] if len(item) > 7 else "",
            confirm=item[8] if len(item) > 8 else "0",
        )

    return parse


def _order(arg: JsonObject, item: JsonObject, frame: JsonObject) -> Order:
    strings_only(item)
    return Order(
        instType=req_str(item, "instType"),
        instId=req_str(item, "instId"),
        ordId=req_str(item, "ordId"),
        state=req_str(item, "state"),
        uTime=req_ms(item, "uTime"),
        cTime=req_ms(item, "cTime"),
        fields=item,
    )


def _position(item: JsonObject, source: str) -> Position:
    strings_only(item)
    return Position(
        posId=req_str(item, "posId"),
        instId=req_str(item, "instId"),
        instType=req_str(item, "instType"),
        pos=req_str(item, "pos"),
        uTime=req_ms(item, "uTime"),
        source=source,
        fields=item,
    )


def _positions(arg: JsonObject, item: JsonObject, frame: JsonObject) -> Position:
    return _position(item, "positions")


def _account(arg: JsonObject, item: JsonObject, frame: JsonObject) -> list[Balance]:
    details = item.get("details")
    if type(details) is not list:
        raise BadField("account item has no 'details' list")
    account_utime = ms_or_zero(item, "uTime")
    balances: list[Balance] = []
    for detail in details:
        if type(detail) is not dict:
            raise BadField("account detail must be an object")
        strings_only(detail)
        utime = ms_or_zero(detail, "uTime") or account_utime
        if not utime:
            raise BadField("account detail has no uTime")
        balances.append(
            Balance(
                ccy=req_str(detail, "ccy"),
                cashBal=req_str(detail, "cashBal"),
                uTime=utime,
                source="account",
                fields=detail,
            )
        )
    return balances


def _balance_and_position(arg: JsonObject, item: JsonObject, frame: JsonObject) -> list[Record]:
    records: list[Record] = []
    p_time = ms_or_zero(item, "pTime")
    for bal in item.get("balData") or ():
        if type(bal) is not dict:
            raise BadField("balData entry must be an object")
        strings_only(bal)
        utime = ms_or_zero(bal, "uTime") or p_time
        records.append(
            Balance(
                ccy=req_str(bal, "ccy"),
                cashBal=req_str(bal, "cashBal"),
                uTime=utime,
                source="balance_and_position",
                fields=bal,
            )
        )
    for pos in item.get("posData") or ():
        if type(pos) is not dict:
            raise BadField("posData entry must be an object")
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
        return ParseError(f"malformed JSON: {exc}", clip(raw))
    if type(obj) is not dict:
        return ParseError(f"frame must be a JSON object, got {type(obj).__name__}", clip(raw))

    if "event" in obj:
        event = obj["event"]
        if type(event) is not str:
            return ParseError("'event' must be a string", clip(raw))
        if event not in KNOWN_EVENTS:
            return Unknown(f"unknown event {event!r}", clip(raw))
        return _event(obj)

    arg = obj.get("arg")
    if type(arg) is not dict:
        return ParseError("frame has neither 'event' nor an 'arg' object", clip(raw))
    channel = arg.get("channel")
    if type(channel) is not str:
        return ParseError("arg has no channel", clip(raw))
    parser = _ITEM_PARSERS.get(channel)
    if parser is None:
        return Unknown(f"unknown channel {channel!r}", clip(raw))
    data = obj.get("data")
    if type(data) is not list:
        return ParseError(f"{channel} frame has no 'data' list", clip(raw))

    try:
        if len(obj) == 2 and len(data) == 1 and type(data[0]) is dict:
            # The common push: {"arg", "data": [one object]} and nothing else, so there are no
            # paging or eventType fields to check. Parsers that return a list (account,
            # balance_and_position, whose eventType comes from the item) take the full path.
            parsed = parser(arg, data[0], obj)
            if type(parsed) is not list:
                return Data(channel, arg, (parsed,), None, None, None)
    except BadField as bad:
        return ParseError(f"{channel}: {bad}", clip(raw))
    # Records; Any because mypy cannot narrow `parsed` to a Record in the else branch below
    # (`type(parsed) is list` narrows only its own branch, and isinstance() would cost a call
    # per item). Data.records is tuple[Any, ...] anyway (see okx/records.py).
    records: list[Any] = []
    try:
        for item in data:
            if type(item) is not dict and not channel.startswith("candle"):
                raise BadField("data item must be an object")
            parsed = parser(arg, item, obj)
            if type(parsed) is list:
                records.extend(parsed)
            else:
                records.append(parsed)
        cur_page = obj.get("curPage")
        if cur_page is not None and type(cur_page) is not int:
            cur_page = opt_int(obj, "curPage")  # raises with the reason
        last_page = obj.get("lastPage")
        if last_page is not None and type(last_page) is not bool:
            raise BadField("'lastPage' must be a boolean")
        event_type = obj.get("eventType")
        if event_type is None and channel == "balance_and_position" and data:
            event_type = data[0].get("eventType")
        if event_type is not None and type(event_type) is not str:
            raise BadField("'eventType' must be a string")
    except BadField as bad:
        return ParseError(f"{channel}: {bad}", clip(raw))
    return Data(channel, arg, tuple(records), event_type, cur_page, last_page)
