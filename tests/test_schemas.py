"""The shared schemas (okx/schemas.py) at the edge: real-shaped frames and REST rows from OKX's
docs keep every field; each rule rejects what it must (the hostile fault's mutations among
them); the WebSocket account path and the REST balance path accept exactly the same details;
a real-shaped account push stores every currency's balance."""

from __future__ import annotations

import copy
import json
import random

import fakeredis
import mongomock
import pytest

from core import keys
from core.settings import WorkerSettings
from okx.errors import BadReply
from okx.parse import parse_frame
from okx.records import Balance, BookData, Candle, Data, ParseError
from okx.rest import rows
from okx.schemas import SCHEMAS, validate_row
from tasks import documents
from tasks.writers import Store
from tasks.writers.mongo_history import ensure_indexes
from tests.frame_mutators import BALANCE as BALANCE_SPEC
from tests.frame_mutators import fields_ok, mutate_item
from tests.recordings import okx_docs_frames as docs


def parse(frame: dict) -> Data | ParseError:
    result = parse_frame(json.dumps(frame, ensure_ascii=False))
    assert type(result) in (Data, ParseError), result
    return result  # type: ignore[return-value]


def with_item(channel: str, item: object) -> dict:
    frame = copy.deepcopy(docs.WS_FRAMES[channel])
    frame["data"] = [item]
    return frame


# ----- every documented field survives ----------------------------------------------------------


@pytest.mark.parametrize("channel", sorted(docs.WS_FRAMES))
def test_each_docs_frame_parses_and_keeps_every_field(channel):
    frame = docs.WS_FRAMES[channel]
    result = parse(frame)
    assert type(result) is Data, result
    item = frame["data"][0]
    rec = result.records[0]
    if type(rec) is BookData:
        assert (rec.asks, rec.bids, str(rec.ts)) == (item["asks"], item["bids"], item["ts"])
        assert (rec.seqId, rec.prevSeqId) == (item.get("seqId"), item.get("prevSeqId"))
        return
    if type(rec) is Candle:
        payload = rec.to_payload()
        names = ("ts", "o", "h", "l", "c", "vol", "volCcy", "volCcyQuote", "confirm")
        assert [payload[n] for n in names] == item
        return
    if channel == "account":
        assert [r.to_payload() for r in result.records] == [
            {**d, "source": "account"} for d in item["details"]
        ]
        return
    if channel == "balance_and_position":
        bal, pos = result.records
        assert bal.to_payload() == {**item["balData"][0], "source": "balance_and_position"}
        assert pos.to_payload() == {**item["posData"][0], "source": "balance_and_position"}
        return
    payload = rec.to_payload()
    for key, value in item.items():
        assert payload[key] == value, key


def test_every_order_state_and_exec_type_is_accepted():
    for state in docs.ORDER_STATES:
        for exec_type in docs.EXEC_TYPES:
            order = {**docs.ORDER, "state": state, "execType": exec_type}
            result = parse(with_item("orders", order))
            assert type(result) is Data, (state, exec_type, result)
            assert result.records[0].to_payload() == order
            assert rows.order_payload(order) == order  # the REST path too


def test_empty_strings_where_okx_sends_them_are_accepted():
    assert type(parse(with_item("tickers", docs.TICKER_EMPTY_SIDE))) is Data
    assert type(parse(with_item("orders", docs.ORDER_LIVE))) is Data  # fillPx "" before a fill
    empty_book = {**docs.BOOK, "asks": [], "bids": []}  # a heartbeat
    assert type(parse(with_item("books", empty_book))) is Data


def test_each_rest_row_is_read_with_every_field():
    r = docs.REST_ROWS
    trade = rows.trade_payload(r["history-trades"], "BTC-USDT")
    assert {k: trade[k] for k in r["history-trades"] if k != "source"} == {
        k: v for k, v in r["history-trades"].items() if k != "source"
    }
    candle = rows.candle_payload(r["history-candles"], "BTC-USDT", "1m")
    assert candle["ts"] == r["history-candles"][0] and candle["confirm"] == "1"
    for name in ("orders-history", "orders-history-archive", "orders-pending"):
        assert rows.order_payload(r[name]) == r[name]
    for name in ("fills", "fills-history"):
        assert rows.fill_payload(r[name]) == {**r[name], "source": "rest"}
    assert rows.balance_payloads(r["balance"]) == [
        {**d, "source": "rest"} for d in r["balance"]["details"]
    ]
    assert rows.position_payload(r["positions"]) == {**r["positions"], "source": "rest"}
    book = rows.book_payload(r["books"], "BTC-USDT", 400)
    assert (book["asks"], book["bids"], book["seqId"]) == (
        r["books"]["asks"],
        r["books"]["bids"],
        123456,
    )
    assert rows.ticker_payload(r["ticker"], "BTC-USDT") == {**r["ticker"], "source": "rest"}
    for name, row in r.items():  # REST /market/books rows: "rest-books" (no prevSeqId)
        assert validate_row("rest-books" if name == "books" else name, row) is None, name


# ----- the rules ------------------------------------------------------------------------------

BAD_DECIMALS = ["²", "١٢", "1e5", "0x1F", "inf", "nan", " 1", "1 ", "+1", "--1", "1.", ".1",
                "1.2.3", "9" * 41, "", "  ", "12a", "-"]  # fmt: skip
GOOD_DECIMALS = ["0", "1", "0.00000166", "42219.9", "9" * 40, f"{'9' * 40}.{'1' * 40}"]


@pytest.mark.parametrize("value", BAD_DECIMALS)
def test_a_price_that_is_not_an_ascii_decimal_is_rejected(value):
    result = parse(with_item("trades", {**docs.TRADE, "px": value}))
    assert type(result) is ParseError
    assert result.reason.startswith("trades px decimal:"), result.reason


@pytest.mark.parametrize("value", GOOD_DECIMALS)
def test_ascii_decimals_are_accepted(value):
    assert type(parse(with_item("trades", {**docs.TRADE, "px": value}))) is Data


def test_negatives_only_where_okx_sends_them():
    assert type(parse(with_item("trades", {**docs.TRADE, "sz": "-1"}))) is ParseError
    order = {**docs.ORDER, "pnl": "-12.5", "fee": "-0.1", "fillPnl": "-3"}
    assert type(parse(with_item("orders", order))) is Data
    assert type(parse(with_item("orders", {**docs.ORDER, "px": "-1"}))) is ParseError
    assert rows.fill_payload(docs.FILL)["tradeId"] == "-242589207"  # liquidation fill
    bad = parse(with_item("trades", {**docs.TRADE, "tradeId": "-5"}))
    assert type(bad) is ParseError and "tradeId integer-id" in bad.reason


# The hostile fault's mutations (okxsim/hostile.py): each must be a counted ParseError.
HOSTILE = [
    ("trades-all", ("tradeId",), "12a"),
    ("trades-all", ("tradeId",), "9" * 40),
    ("trades-all", ("tradeId",), "１２３"),
    ("trades-all", ("px",), ""),
    ("trades-all", ("px",), "1e400x"),
    ("trades-all", ("side",), "  "),
    ("trades", ("count",), "0x1F"),
    ("trades-all", ("ts",), "١٧٠٠٠٠٠٠٠٠١٢٣"),
    ("trades-all", ("sz",), 0.12),
    ("trades-all", ("px",), {"value": "1"}),
    ("trades-all", ("tradeId",), None),
    ("tickers", ("last",), "12a"),
    ("tickers", ("bidPx",), "-"),
    ("tickers", ("vol24h",), "0x1F"),
    ("tickers", ("ts",), "9" * 40),
    ("tickers", ("ts",), ""),
    ("tickers", ("instId",), None),
    ("books", ("asks", 0, 0), "12a"),
    ("books", ("bids", 0, 0), ""),
    ("books", ("asks", 0, 0), "1e400x"),
    ("books", ("bids", 0, 1), "  "),
    ("books", ("asks", 0, 3), "0x1F"),
    ("books", ("seqId",), None),
    ("books", ("seqId",), 12.0),
    ("books", ("prevSeqId",), 0.5),
    ("books", ("checksum",), "0"),
    ("books", ("asks",), "none"),
    ("books5", ("asks",), None),
    ("candle1m", (0,), "12a"),
    ("candle1m", (4,), ""),
    ("candle1m", (5,), "1e400x"),
]


def _set(item: object, path: tuple, value: object) -> object:
    item = copy.deepcopy(item)
    node = item
    for key in path[:-1]:
        node = node[key]  # type: ignore[index]
    if value is None:
        del node[path[-1]]  # type: ignore[attr-defined]
    else:
        node[path[-1]] = value  # type: ignore[index]
    return item


@pytest.mark.parametrize(("channel", "path", "value"), HOSTILE)
def test_every_hostile_mutation_is_a_parse_error_naming_channel_and_field(channel, path, value):
    item = _set(docs.WS_FRAMES[channel]["data"][0], path, value)
    result = parse(with_item(channel, item))
    assert type(result) is ParseError, result
    label = result.reason.split(":", 1)[0]  # the feeder's counter label
    assert label.startswith(channel) and len(label) <= 48
    field = "asks" if path[0] == "asks" else "bids" if path[0] == "bids" else None
    if field is not None or type(path[0]) is str:
        assert str(field or path[0]) in label or "seqId" in label, label


def test_ints_past_int64_are_rejected_even_when_the_json_decoder_keeps_them():
    result = parse_frame(
        json.dumps(with_item("books", {**docs.BOOK, "seqId": (1 << 64) - 1})).encode()
    )
    assert type(result) is ParseError and "seqId json-integer" in result.reason


def test_unknown_fields_of_any_json_type_are_kept_not_validated():
    order = {**docs.ORDER, "newField": {"deep": [1, None, True]}, "another": 5}
    result = parse(with_item("orders", order))
    assert type(result) is Data and result.records[0].to_payload() == order
    trade = {**docs.TRADE, "future": [1]}
    assert type(parse(with_item("trades", trade))) is Data


def test_one_bad_row_rejects_the_whole_frame():
    frame = with_item("trades", docs.TRADE)
    frame["data"] = [docs.TRADE, {**docs.TRADE, "tradeId": "12a"}]
    assert type(parse(frame)) is ParseError


def test_validate_row_names_kinds_and_channels_and_refuses_unknown_kinds():
    assert validate_row("trades-all", docs.TRADE_ALL) is None
    assert validate_row("candle1H", docs.CANDLE) is None
    reason = validate_row("tickers", {**docs.TICKER, "last": "12a"})
    assert reason is not None and reason.startswith("last decimal:")
    reason = validate_row("account", docs.ACCOUNT | {"details": [{"ccy": "BTC"}]})
    assert reason == "details cashBal missing: required field 'cashBal' is absent"
    assert validate_row("books", {**docs.BOOK, "seqId": None} | {}) is not None
    with pytest.raises(KeyError):
        validate_row("no-such-kind", {})
    assert set(SCHEMAS) >= {"orders", "fills", "balance", "positions", "ticker"}


# ----- one schema for both paths ----------------------------------------------------------------


def _ws_account_accepts(detail: object) -> bool:
    account = {**docs.ACCOUNT, "details": [detail]}
    return type(parse(with_item("account", account))) is Data


def _rest_balance_accepts(detail: object) -> bool:
    try:
        rows.balance_payloads({**docs.ACCOUNT, "details": [detail]})
    except BadReply:
        return False
    return True


def test_the_ws_account_and_rest_balance_paths_accept_exactly_the_same_details():
    rng = random.Random(7)
    verdicts = set()
    for _ in range(600):
        detail, label = mutate_item(rng, docs.BALANCE_DETAIL)
        ws, rest = _ws_account_accepts(detail), _rest_balance_accepts(detail)
        assert ws == rest, label
        assert ws == fields_ok(BALANCE_SPEC, detail), label
        verdicts.add(ws)
    assert verdicts == {True, False}  # both outcomes were exercised


# ----- an account push with boolean detail fields is stored -------------------------------------


def test_a_real_shaped_account_push_stores_every_currencys_balance():
    result = parse(docs.WS_FRAMES["account"])
    assert type(result) is Data and all(type(r) is Balance for r in result.records)
    payloads = [r.to_payload() for r in result.records]
    good, bad = documents.split_records("balances", payloads)
    assert not bad
    db = mongomock.MongoClient()["okex"]
    ensure_indexes(db)
    r = fakeredis.FakeRedis()
    Store(db, r, WorkerSettings(books_sample_ms=0)).write("balances", good)
    stored = {d["ccy"]: d for d in db[keys.BALANCE].find()}
    assert set(stored) == {"USDT", "BTC"}
    assert stored["BTC"]["collateralEnabled"] is True  # the JSON boolean as OKX sent it
    assert stored["USDT"]["cashBal"] == "1000.5"
    for ccy, cash in (("USDT", b"1000.5"), ("BTC", b"0.5")):
        assert r.hget(keys.balance(ccy), "cashBal") == cash
