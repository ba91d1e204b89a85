"""Every OKX frame kind, shaped like OKX's docs, and hostile input: the parser never raises."""

from __future__ import annotations

import orjson
import pytest

from okx.channels import CANDLE_BARS
from okx.parse import parse_frame
from okx.records import (
    Balance,
    BookData,
    Candle,
    Data,
    Event,
    Order,
    ParseError,
    Pong,
    Position,
    Ticker,
    Trade,
    Unknown,
)


def frame(obj) -> str:
    return orjson.dumps(obj).decode()


BOOK_SNAPSHOT = frame(
    {
        "arg": {"channel": "books", "instId": "BTC-USDT"},
        "action": "snapshot",
        "data": [
            {
                "asks": [["30238.8", "2", "0", "1"], ["30239", "0.5", "0", "3"]],
                "bids": [["30232.5", "11", "0", "2"]],
                "ts": "1652459225464",
                "checksum": -1881014294,
                "prevSeqId": -1,
                "seqId": 123456,
            }
        ],
    }
)


def only_record(result):
    assert isinstance(result, Data), result
    assert len(result.records) == 1
    return result.records[0]


# ----- books ---------------------------------------------------------------------------------


def test_books_snapshot_keeps_strings_and_ints():
    book = only_record(parse_frame(BOOK_SNAPSHOT))
    assert book == BookData(
        channel="books",
        instId="BTC-USDT",
        action="snapshot",
        asks=[["30238.8", "2", "0", "1"], ["30239", "0.5", "0", "3"]],
        bids=[["30232.5", "11", "0", "2"]],
        ts=1652459225464,
        seqId=123456,
        prevSeqId=-1,
        checksum=-1881014294,
    )


def test_books_update_without_checksum_key():
    raw = frame(
        {
            "arg": {"channel": "books", "instId": "ETH-USDT"},
            "action": "update",
            "data": [
                {
                    "asks": [],
                    "bids": [["1800.1", "0", "0", "0"]],
                    "ts": "1700000000000",
                    "prevSeqId": 10,
                    "seqId": 15,
                }
            ],
        }
    )
    book = only_record(parse_frame(raw))
    assert (book.action, book.prevSeqId, book.seqId, book.checksum) == ("update", 10, 15, None)


@pytest.mark.parametrize("channel", ["books50-l2-tbt", "books-l2-tbt"])
def test_tbt_books_are_incremental(channel):
    raw = BOOK_SNAPSHOT.replace('"books"', f'"{channel}"')
    book = only_record(parse_frame(raw))
    assert book.channel == channel and book.action == "snapshot"


def test_books5_and_bbo_have_no_action():
    books5 = frame(
        {
            "arg": {"channel": "books5", "instId": "BTC-USDT"},
            "data": [
                {
                    "asks": [["8446", "95", "0", "3"]],
                    "bids": [["8445", "1", "0", "1"]],
                    "instId": "BTC-USDT",
                    "ts": "1597026383085",
                    "seqId": 123,
                }
            ],
        }
    )
    bbo = frame(
        {
            "arg": {"channel": "bbo-tbt", "instId": "BTC-USDT"},
            "data": [
                {
                    "asks": [["8446", "95", "0", "3"]],
                    "bids": [["8445", "1", "0", "1"]],
                    "ts": "1597026383085",
                    "seqId": 124,
                }
            ],
        }
    )
    for raw, channel in ((books5, "books5"), (bbo, "bbo-tbt")):
        book = only_record(parse_frame(raw))
        assert book.channel == channel and book.action is None and book.prevSeqId is None


def test_book_with_bad_action_is_an_error():
    raw = BOOK_SNAPSHOT.replace('"snapshot"', '"partial"')
    result = parse_frame(raw)
    assert isinstance(result, ParseError) and "action" in result.reason


def test_book_level_with_number_price_is_an_error():
    raw = BOOK_SNAPSHOT.replace('["30232.5"', "[30232.5")
    result = parse_frame(raw)
    assert isinstance(result, ParseError) and result.reason.startswith("books bids px decimal:")


def test_book_seqid_as_string_is_an_error():
    raw = BOOK_SNAPSHOT.replace('"seqId":123456', '"seqId":"123456"')
    result = parse_frame(raw)
    assert isinstance(result, ParseError) and "seqId" in result.reason


# ----- trades, tickers, candles -----------------------------------------------------------------


def test_trades_aggregated():
    raw = frame(
        {
            "arg": {"channel": "trades", "instId": "BTC-USDT"},
            "data": [
                {
                    "instId": "BTC-USDT",
                    "tradeId": "130639474",
                    "px": "42219.9",
                    "sz": "0.12060306",
                    "side": "buy",
                    "ts": "1630048897897",
                    "count": "3",
                    "source": "0",
                    "seqId": 1234,
                }
            ],
        }
    )
    assert only_record(parse_frame(raw)) == Trade(
        channel="trades",
        instId="BTC-USDT",
        tradeId="130639474",
        px="42219.9",
        sz="0.12060306",
        side="buy",
        ts=1630048897897,
        count="3",
        source="0",
        seqId=1234,
    )


def test_trades_all_and_old_shape_defaults():
    raw = frame(
        {
            "arg": {"channel": "trades-all", "instId": "BTC-USDT"},
            "data": [
                {
                    "instId": "BTC-USDT",
                    "tradeId": "1",
                    "px": "1.5",
                    "sz": "2",
                    "side": "sell",
                    "ts": "1630048897897",
                }
            ],
        }
    )
    trade = only_record(parse_frame(raw))
    assert (trade.channel, trade.count, trade.source, trade.seqId) == ("trades-all", "1", "0", None)
    assert trade.to_payload()["ts"] == "1630048897897"


def test_trade_missing_px_is_an_error_for_the_whole_frame():
    raw = frame(
        {
            "arg": {"channel": "trades", "instId": "BTC-USDT"},
            "data": [
                {
                    "instId": "BTC-USDT",
                    "tradeId": "1",
                    "px": "1",
                    "sz": "2",
                    "side": "buy",
                    "ts": "1",
                },
                {"instId": "BTC-USDT", "tradeId": "2", "sz": "2", "side": "buy", "ts": "2"},
            ],
        }
    )
    result = parse_frame(raw)
    assert isinstance(result, ParseError) and "'px'" in result.reason


def test_ticker_with_empty_bid():
    item = {
        "instType": "SPOT",
        "instId": "LTC-USD",
        "last": "9999.99",
        "lastSz": "1",
        "askPx": "9999.99",
        "askSz": "11",
        "bidPx": "",
        "bidSz": "",
        "open24h": "9000",
        "high24h": "10000",
        "low24h": "8888.88",
        "volCcy24h": "2222",
        "vol24h": "2222",
        "sodUtc0": "2222",
        "sodUtc8": "2222",
        "ts": "1597026383085",
    }
    ticker = only_record(
        parse_frame(frame({"arg": {"channel": "tickers", "instId": "LTC-USD"}, "data": [item]}))
    )
    assert isinstance(ticker, Ticker)
    assert ticker.ts == 1597026383085 and ticker.fields["bidPx"] == ""
    assert ticker.to_payload() == item


@pytest.mark.parametrize("bar", CANDLE_BARS)
def test_every_candle_bar(bar):
    raw = frame(
        {
            "arg": {"channel": f"candle{bar}", "instId": "BTC-USDT"},
            "data": [
                [
                    "1597026383085",
                    "8533.02",
                    "8553.74",
                    "8527.17",
                    "8548.26",
                    "45247",
                    "529.5858061",
                    "5290000",
                    "0",
                ]
            ],
        }
    )
    candle = only_record(parse_frame(raw))
    assert candle == Candle(
        instId="BTC-USDT",
        bar=bar,
        ts=1597026383085,
        o="8533.02",
        h="8553.74",
        l="8527.17",
        c="8548.26",
        vol="45247",
        volCcy="529.5858061",
        volCcyQuote="5290000",
        confirm="0",
    )


def test_candle_minute_and_month_differ():
    minute = only_record(
        parse_frame(
            frame(
                {
                    "arg": {"channel": "candle1m", "instId": "X-Y"},
                    "data": [["1", "1", "1", "1", "1", "1", "1", "1", "1"]],
                }
            )
        )
    )
    month = only_record(
        parse_frame(
            frame(
                {
                    "arg": {"channel": "candle1M", "instId": "X-Y"},
                    "data": [["1", "1", "1", "1", "1", "1", "1", "1", "1"]],
                }
            )
        )
    )
    assert (minute.bar, month.bar) == ("1m", "1M")


def test_old_seven_field_candle():
    candle = only_record(
        parse_frame(
            frame(
                {
                    "arg": {"channel": "candle1H", "instId": "X-Y"},
                    "data": [["1", "2", "3", "4", "5", "6", "7"]],
                }
            )
        )
    )
    assert (candle.volCcyQuote, candle.confirm) == ("", "0")


def test_unknown_candle_bar_is_unknown():
    result = parse_frame(frame({"arg": {"channel": "candle7m", "instId": "X-Y"}, "data": []}))
    assert isinstance(result, Unknown) and "candle7m" in result.reason


# ----- private channels ---------------------------------------------------------------------

ORDER = {
    "instType": "SPOT",
    "instId": "BTC-USDT",
    "ordId": "312269865356374016",
    "clOrdId": "b1",
    "px": "999",
    "sz": "3",
    "ordType": "limit",
    "side": "buy",
    "posSide": "",
    "tdMode": "cash",
    "fillPx": "",
    "fillSz": "0",
    "tradeId": "",
    "fillTime": "",
    "accFillSz": "0",
    "avgPx": "",
    "state": "live",
    "fee": "0",
    "feeCcy": "BTC",
    "uTime": "1597026383085",
    "cTime": "1597026383085",
    "code": "0",
    "msg": "",
    "reqId": "",
    "amendResult": "",
}


def test_orders():
    order = only_record(
        parse_frame(
            frame(
                {
                    "arg": {"channel": "orders", "instType": "ANY", "uid": "77982378738415879"},
                    "data": [ORDER],
                }
            )
        )
    )
    assert isinstance(order, Order)
    assert (order.ordId, order.state, order.uTime, order.cTime) == (
        "312269865356374016",
        "live",
        1597026383085,
        1597026383085,
    )
    assert order.to_payload() == ORDER


def test_order_with_number_field_is_an_error():
    bad = {**ORDER, "sz": 3}
    result = parse_frame(frame({"arg": {"channel": "orders", "instType": "ANY"}, "data": [bad]}))
    assert isinstance(result, ParseError) and "'sz'" in result.reason


def test_balance_and_position():
    raw = frame(
        {
            "arg": {"channel": "balance_and_position", "uid": "7"},
            "data": [
                {
                    "pTime": "1597026383085",
                    "eventType": "snapshot",
                    "balData": [{"ccy": "BTC", "cashBal": "1", "uTime": "1597026383085"}],
                    "posData": [
                        {
                            "posId": "1111111111",
                            "tradeId": "2",
                            "instId": "BTC-USD-191018",
                            "instType": "FUTURES",
                            "mgnMode": "cross",
                            "posSide": "long",
                            "pos": "10",
                            "ccy": "BTC",
                            "posCcy": "",
                            "avgPx": "3320",
                            "uTime": "1597026383085",
                        }
                    ],
                    "trades": [{"instId": "BTC-USD-191018", "tradeId": "2"}],
                }
            ],
        }
    )
    result = parse_frame(raw)
    assert isinstance(result, Data) and result.event_type == "snapshot"
    balance, position = result.records
    assert balance == Balance(
        ccy="BTC",
        cashBal="1",
        uTime=1597026383085,
        source="balance_and_position",
        fields={"ccy": "BTC", "cashBal": "1", "uTime": "1597026383085"},
    )
    assert isinstance(position, Position)
    assert (position.posId, position.pos, position.source) == (
        "1111111111",
        "10",
        "balance_and_position",
    )


def test_positions_paged_snapshot_envelope():
    raw = frame(
        {
            "arg": {"channel": "positions", "instType": "ANY"},
            "eventType": "snapshot",
            "curPage": 1,
            "lastPage": True,
            "data": [
                {
                    "posId": "307173036051017730",
                    "instId": "BTC-USDT-SWAP",
                    "instType": "SWAP",
                    "pos": "1",
                    "uTime": "1614859751636",
                    "cTime": "1614859751636",
                    "tradeId": "109844",
                    "ccy": "USDT",
                }
            ],
        }
    )
    result = parse_frame(raw)
    assert (result.event_type, result.cur_page, result.last_page) == ("snapshot", 1, True)
    assert result.records[0].source == "positions"


def test_account_details_become_balances():
    raw = frame(
        {
            "arg": {"channel": "account", "uid": "7"},
            "eventType": "event_update",
            "curPage": 1,
            "lastPage": True,
            "data": [
                {
                    "uTime": "1597026383085",
                    "totalEq": "41624.32",
                    "details": [
                        {
                            "ccy": "BTC",
                            "eq": "1",
                            "cashBal": "1",
                            "availBal": "1",
                            "uTime": "1597026383080",
                        },
                        {"ccy": "USDT", "eq": "5", "cashBal": "5", "uTime": ""},
                    ],
                }
            ],
        }
    )
    result = parse_frame(raw)
    btc, usdt = result.records
    assert (btc.ccy, btc.uTime, btc.source) == ("BTC", 1597026383080, "account")
    # A detail without its own uTime takes the account's.
    assert (usdt.ccy, usdt.uTime) == ("USDT", 1597026383085)


# ----- events and pong -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "obj, expected",
    [
        (
            {"event": "login", "code": "0", "msg": "", "connId": "a4d3ae55"},
            Event(event="login", code="0", msg="", conn_id="a4d3ae55"),
        ),
        (
            {"event": "error", "code": "60009", "msg": "Login failed.", "connId": "a4d3ae55"},
            Event(event="error", code="60009", msg="Login failed.", conn_id="a4d3ae55"),
        ),
        (
            {
                "id": "ob1",
                "event": "subscribe",
                "arg": {"channel": "books", "instId": "BTC-USDT"},
                "connId": "accb8e21",
            },
            Event(
                event="subscribe",
                id="ob1",
                arg={"channel": "books", "instId": "BTC-USDT"},
                conn_id="accb8e21",
            ),
        ),
        (
            {
                "event": "unsubscribe",
                "arg": {"channel": "tickers", "instId": "LTC-USD"},
                "connId": "x",
            },
            Event(
                event="unsubscribe", arg={"channel": "tickers", "instId": "LTC-USD"}, conn_id="x"
            ),
        ),
        (
            {
                "id": "ob2",
                "event": "error",
                "code": "60012",
                "msg": "Invalid request",
                "connId": "y",
            },
            Event(event="error", id="ob2", code="60012", msg="Invalid request", conn_id="y"),
        ),
        (
            {
                "event": "notice",
                "code": "64008",
                "msg": "The connection will soon be closed for a service upgrade.",
                "connId": "z",
            },
            Event(
                event="notice",
                code="64008",
                msg="The connection will soon be closed for a service upgrade.",
                conn_id="z",
            ),
        ),
        (
            {"event": "channel-conn-count", "channel": "orders", "connCount": "2", "connId": "c"},
            Event(event="channel-conn-count", conn_count="2", conn_id="c"),
        ),
        (
            {
                "event": "channel-conn-count-error",
                "channel": "orders",
                "connCount": "30",
                "connId": "c",
            },
            Event(event="channel-conn-count-error", conn_count="30", conn_id="c"),
        ),
    ],
)
def test_events(obj, expected):
    assert parse_frame(frame(obj)) == expected


def test_numeric_error_code_is_normalised_to_string():
    assert parse_frame('{"event":"error","code":60012,"msg":"x"}').code == "60012"


def test_pong_text_and_bytes():
    assert parse_frame("pong") == Pong() and parse_frame(b"pong") == Pong()


# ----- hostile input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, reason",
    [
        (BOOK_SNAPSHOT[:57], "malformed JSON"),  # truncated
        (b"\x00\xff\xfe\x81junk", "malformed JSON"),  # binary junk
        ("", "malformed JSON"),
        ("ping", "malformed JSON"),
        ("[1, 2, 3]", "must be a JSON object"),
        ('"pong"', "must be a JSON object"),  # a JSON-encoded pong is not pong
        ('{"data": []}', "neither 'event' nor an 'arg'"),  # missing arg
        ('{"arg": "books", "data": []}', "neither 'event' nor an 'arg'"),
        ('{"arg": {"instId": "BTC-USDT"}, "data": []}', "no channel"),
        ('{"arg": {"channel": "trades", "instId": "BTC-USDT"}}', "no 'data' list"),
        (
            '{"arg": {"channel": "trades", "instId": "BTC-USDT"}, "data": ["x"]}',
            "must be an object",
        ),
        (
            '{"arg": {"channel": "trades", "instId": "B"}, "data": [{"instId": "B", "tradeId": 5, '
            '"px": "1", "sz": "1", "side": "buy", "ts": "1"}]}',
            "trades tradeId integer-id:",
        ),
        (
            '{"arg": {"channel": "trades", "instId": "B"}, "data": [{"instId": "B", "tradeId": "5", '
            '"px": "1", "sz": "1", "side": "buy", "ts": "12:00"}]}',
            "trades ts milliseconds:",
        ),
        ('{"arg": {"channel": "candle1m", "instId": "B"}, "data": [["1", "2"]]}', "at least 7"),
        ('{"event": 5}', "'event' must be a string"),
        ('{"arg": {"channel": "positions"}, "lastPage": "yes", "data": []}', "lastPage"),
    ],
)
def test_malformed_input_is_a_parse_error(raw, reason):
    result = parse_frame(raw)
    assert isinstance(result, ParseError), result
    assert reason in result.reason


def test_unknown_channel_and_event():
    channel = parse_frame('{"arg": {"channel": "mark-price", "instId": "B"}, "data": []}')
    event = parse_frame('{"event": "brand-new", "code": "0"}')
    assert isinstance(channel, Unknown) and "mark-price" in channel.reason
    assert isinstance(event, Unknown) and "brand-new" in event.reason


def test_bad_frame_keeps_a_clipped_copy_for_the_log():
    result = parse_frame("{" + "x" * 10_000)
    assert isinstance(result, ParseError) and len(result.raw) <= 300


def test_fuzzed_mutations_never_raise():
    # Chop and corrupt real frames at every position: the parser must return, never raise.
    for base in (
        BOOK_SNAPSHOT,
        frame({"arg": {"channel": "orders", "instType": "ANY"}, "data": [ORDER]}),
    ):
        for i in range(0, len(base), 3):
            for mutated in (base[:i], base[:i] + "\x00" + base[i + 1 :], base[:i] + base[i + 5 :]):
                result = parse_frame(mutated)
                assert isinstance(result, (Data, ParseError, Unknown, Event, Pong))
