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

from okx.channels import BOOK_CHANNELS, CANDLE_BARS
from okx.parse_fields import BadField, clip, opt_int
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
from okx.schema_rules import LIST, MS_E
from okx.schemas import (
    ACCOUNT,
    BALANCE,
    EVENT_TYPE,
    INT64,
    MAX_DIGITS,
    MAX_ID_DIGITS,
    MAX_MS_DIGITS,
    ORDER,
    POSITION,
    SCHEMAS,
    TICKER,
    TRADE,
    Schema,
    check,
    check_candle,
    check_levels,
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


# ----- per-channel item parsers ------------------------------------------------------------------


def _fail(schema: Schema, row: Any) -> BadField:
    """The reason a book row failed the fast path: check()'s, or the seqId pairing rule."""
    return BadField(check(schema, row) or "seqId pairing: seqId and prevSeqId must come together")


def _book(arg: JsonObject, item: JsonObject, frame: JsonObject) -> BookData:
    channel = arg["channel"]
    action = frame.get("action")
    incremental = channel not in _PUSHED_BOOKS
    if not incremental:
        action = None
    elif action != "update" and action != "snapshot":
        raise BadField(f"action enum: book action must be 'snapshot' or 'update', got {action!r}")
    get = item.get
    inst_id = get("instId")
    if inst_id is None and "instId" not in item:
        inst_id = arg.get("instId")  # books5 carries it in the item, the others in arg
    if type(inst_id) is not str or not inst_id:
        raise BadField(f"instId non-empty-string: book frame has no instId, got {inst_id!r:.40}")
    asks = get("asks")
    bids = get("bids")
    ts = get("ts")
    seq = get("seqId")
    prev = get("prevSeqId")
    cs = get("checksum")
    # Fast path: every field well-typed and in range; check() gives the precise reason
    # otherwise (and is the definition: this condition accepts nothing it rejects).
    if not (
        type(asks) is list
        and type(bids) is list
        and type(ts) is str
        and ts.isdigit()
        and ts.isascii()
        and len(ts) <= MAX_MS_DIGITS
        and (type(seq) is int and -INT64 <= seq < INT64 if seq is not None else "seqId" not in item)
        and (
            type(prev) is int and -INT64 <= prev < INT64
            if prev is not None
            else "prevSeqId" not in item
        )
        # seqId and prevSeqId come together on the incremental channels (both, or neither as
        # in 2022's feeds): one without the other is a frame broken on the way
        and (not incremental or (seq is None) is (prev is None))
        and (type(cs) is int and -INT64 <= cs < INT64 if cs is not None else "checksum" not in item)
    ):
        raise _fail(_BOOK_SCHEMA[channel], item)
    # Both sides in one pass (one join, one regex); only a failure looks at each side alone.
    if check_levels(asks + bids, "levels") is not None:
        raise BadField(check_levels(asks, "asks") or check_levels(bids, "bids") or "levels")
    return BookData(channel, inst_id, action, asks, bids, int(ts), seq, prev, cs)


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
    # Fast path, the common trade: plain digits or one inner dot (C-level str methods, no call
    # per field); anything else, and every rejection, goes through check(TRADE) itself.
    if (
        type(trade_id) is str
        and type(px) is str
        and type(sz) is str
        and type(ts) is str
        and type(count) is str
        and type(inst_id) is str
        and inst_id
        and (side == "buy" or side == "sell")
        and (source == "0" or source == "1")
        and (seq is None or (type(seq) is int and -INT64 <= seq < INT64))
        and 0 < len(trade_id) <= MAX_ID_DIGITS
        and 0 < len(ts) <= MAX_MS_DIGITS
        and 0 < len(count) <= MAX_ID_DIGITS
        and len(px) <= MAX_DIGITS
        and len(sz) <= MAX_DIGITS
        and (trade_id + ts + count).isdigit()
        and (trade_id + ts + count + px + sz).isascii()
        and px.replace(".", "", 1).isdigit()
        and sz.replace(".", "", 1).isdigit()
        and px[0] != "."
        and px[-1] != "."
        and sz[0] != "."
        and sz[-1] != "."
        and (seq is not None or "seqId" not in item)
    ):
        return Trade(arg["channel"], inst_id, trade_id, px, sz, side, int(ts), count, source, seq)
    reason = check(TRADE, item)
    if reason is not None:
        raise BadField(reason)
    return Trade(
        arg["channel"],
        item["instId"],
        item["tradeId"],
        item["px"],
        item["sz"],
        item["side"],
        int(item["ts"]),
        get("count", "1"),
        get("source", "0"),
        get("seqId"),
    )


def _ticker(arg: JsonObject, item: JsonObject, frame: JsonObject) -> Ticker:
    reason = check(TICKER, item)
    if reason is not None:
        raise BadField(reason)
    fields = {key: item[key] for key in TICKER_FIELDS if key in item}
    return Ticker(instId=item["instId"], ts=int(item["ts"]), fields=fields)


def _candle_parser(bar: str) -> ItemParser:
    def parse(arg: JsonObject, item: Any, frame: JsonObject) -> Candle:
        # [ts, o, h, l, c, vol, volCcy, volCcyQuote, confirm]; older payloads had 7 fields, newer
        # ones may add more: read by index and ignore the rest.
        reason = check_candle(item)
        if reason is not None:
            raise BadField(reason)
        inst_id = arg.get("instId")
        if type(inst_id) is not str:
            raise BadField("instId missing: candle frame has no instId in arg")
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
    reason = check(ORDER, item)
    if reason is not None:
        raise BadField(reason)
    return Order(
        instType=item["instType"],
        instId=item["instId"],
        ordId=item["ordId"],
        state=item["state"],
        uTime=int(item["uTime"]),
        cTime=int(item["cTime"]),
        fields=item,
    )


def _position(item: Any, source: str, where: str = "") -> Position:
    reason = check(POSITION, item)
    if reason is not None:
        raise BadField(where + reason)
    return Position(
        posId=item["posId"],
        instId=item["instId"],
        instType=item["instType"],
        pos=item["pos"],
        uTime=int(item["uTime"]),
        source=source,
        fields=item,
    )


def _positions(arg: JsonObject, item: JsonObject, frame: JsonObject) -> Position:
    return _position(item, "positions")


def _balance(detail: Any, fallback_utime: int, source: str, where: str) -> Balance:
    """One currency (an account detail, a balData entry): the same schema as REST's balance."""
    reason = check(BALANCE, detail)
    if reason is not None:
        raise BadField(where + reason)
    utime = int(detail.get("uTime") or 0) or fallback_utime
    if not utime:
        raise BadField(f"{where}uTime missing: a balance needs its uTime or the account's")
    return Balance(
        ccy=detail["ccy"], cashBal=detail["cashBal"], uTime=utime, source=source, fields=detail
    )


def _account(arg: JsonObject, item: JsonObject, frame: JsonObject) -> list[Balance]:
    reason = check(ACCOUNT, item)
    if reason is not None:
        raise BadField(reason)
    account_utime = int(item.get("uTime") or 0)
    return [_balance(d, account_utime, "account", "details ") for d in item["details"]]


def _balance_and_position(arg: JsonObject, item: JsonObject, frame: JsonObject) -> list[Record]:
    reason = check(_BAL_AND_POS, item)
    if reason is not None:
        raise BadField(reason)
    records: list[Record] = []
    p_time = int(item.get("pTime") or 0)
    for bal in item.get("balData") or ():
        records.append(_balance(bal, p_time, "balance_and_position", "balData "))
    for pos in item.get("posData") or ():
        records.append(_position(pos, "balance_and_position", "posData "))
    return records


_BOOK_SCHEMA = {name: SCHEMAS[name] for name in BOOK_CHANNELS}
_BAL_AND_POS: Schema = (
    ("pTime", MS_E, False),
    ("eventType", EVENT_TYPE, False),
    ("balData", LIST, False),
    ("posData", LIST, False),
    ("trades", LIST, False),
)


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
        return ParseError(f"{channel} {bad}", clip(raw))
    # Records; Any because mypy cannot narrow `parsed` to a Record in the else branch below
    # (`type(parsed) is list` narrows only its own branch, and isinstance() would cost a call
    # per item). Data.records is tuple[Any, ...] anyway (see okx/records.py).
    records: list[Any] = []
    try:
        for item in data:
            if type(item) is not dict and not channel.startswith("candle"):
                raise BadField("row object: data item must be an object")
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
            raise BadField("lastPage json-boolean: 'lastPage' must be a boolean")
        event_type = obj.get("eventType")
        if event_type is None and channel == "balance_and_position" and data:
            event_type = data[0].get("eventType")
        if event_type is not None and (type(event_type) is not str or event_type not in EVENT_TYPE):
            raise BadField(f"eventType enum: unknown eventType {str(event_type)[:40]!r}")
    except BadField as bad:
        return ParseError(f"{channel} {bad}", clip(raw))
    return Data(channel, arg, tuple(records), event_type, cur_page, last_page)
