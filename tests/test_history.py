"""History paging (okx/rest/endpoints.py) against fake `get`s: no network, no server.

FakeTrades answers history-trades with OKX's semantics (newest first, `after` = strictly older,
type 1 by tradeId, type 2 by ts, at most `limit` rows), so the paging logic is checked against
an independent model of the exchange; scripted fakes return hostile pages.
"""

from __future__ import annotations

import itertools

import pytest

from okx.rest import endpoints as history
from okx.rest.client import RestError
from okx.rest.endpoints import Page

DAY = 86_400_000


def trade_row(tid: int, ts: int, inst: str = "BTC-USDT") -> dict:
    return {
        "instId": inst,
        "tradeId": str(tid),
        "px": "100.5",
        "sz": "0.1",
        "side": "buy",
        "source": "0",
        "ts": str(ts),
    }


class FakeTrades:
    """history-trades over a list of (tradeId, ts), ids increasing with gaps, ts with ties."""

    def __init__(self, trades: list[tuple[int, int]]) -> None:
        self.trades = sorted(trades)
        self.calls: list[dict] = []

    def get(self, path, params=None, signed=False, *, row_type=dict):
        assert path == history.TRADES_PATH and not signed
        self.calls.append(dict(params))
        limit = int(params["limit"])
        rows = self.trades
        if "after" in params:
            after = int(params["after"])
            key = 0 if params.get("type", "1") == "1" else 1
            rows = [t for t in rows if t[key] < after]
        return [trade_row(*t) for t in reversed(rows[-limit:])]


def market(n: int = 1000) -> list[tuple[int, int]]:
    # ids from 5000 with a hole every 7th id (ids are compared as ints, not counted); three
    # trades share each millisecond so ts bounds meet ties
    ids = [5000 + i for i in range(int(n * 1.2)) if i % 7 != 3][:n]
    return [(tid, 1_700_000_000_000 + (k // 3) * 10) for k, tid in enumerate(ids)]


def ids_of(pages: list[Page]) -> list[int]:
    return [int(r["tradeId"]) for p in pages for r in p.records]


def test_trades_between_two_ids_are_exact_oldest_first_and_end_with_no_cursor():
    fake = FakeTrades(market())
    ids = [t[0] for t in fake.trades]
    lower, upper = ids[100], ids[450]
    pages = list(history.trades(fake, "BTC-USDT", lower_id=lower, upper_id=str(upper)))
    for newer, older in zip(pages, pages[1:]):  # pages newest first
        assert max(ids_of([older])) < min(ids_of([newer]))
    got = sorted(ids_of(pages))
    assert got == [i for i in ids if lower < i < upper]  # both ends exclusive, exact
    assert len(got) == len(set(got))
    for p in pages:  # oldest first within a page
        page_ids = [int(r["tradeId"]) for r in p.records]
        assert page_ids == sorted(page_ids)
    assert [p.cursor is None for p in pages] == [False] * (len(pages) - 1) + [True]
    assert not pages[-1].history_ended
    assert len(fake.calls) == 4  # 349 trades: 4 pages of 100, no request past the lower id
    assert fake.calls[0]["after"] == str(upper) and fake.calls[0]["type"] == "1"


def test_trade_payload_is_a_trades_all_record_from_rest():
    fake = FakeTrades([(10, 1000), (11, 1001)])
    [page] = list(history.trades(fake, "BTC-USDT", lower_id=9, upper_id=12))
    assert page.records[0] == {
        "instId": "BTC-USDT",
        "tradeId": "10",
        "px": "100.5",
        "sz": "0.1",
        "side": "buy",
        "ts": "1000",
        "count": "1",
        "source": "rest",
        "seqId": None,
        "channel": "trades-all",
    }


def test_trades_by_time_only_start_with_a_ts_cursor_and_keep_ties_at_both_ends():
    fake = FakeTrades(market())
    lo_ts, hi_ts = fake.trades[590][1], fake.trades[900][1]
    pages = list(history.trades(fake, "BTC-USDT", lower_ms=lo_ts, upper_ms=hi_ts))
    assert sorted(ids_of(pages)) == [t for t, ts in fake.trades if lo_ts <= ts <= hi_ts]
    assert len(fake.calls) == 4  # 313 trades; it stops at the first trade older than lower_ms
    assert fake.calls[0]["type"] == "2" and fake.calls[0]["after"] == str(hi_ts + 1)
    assert all(c["type"] == "1" for c in fake.calls[1:])


def test_trades_with_no_upper_bound_start_from_the_newest_page():
    fake = FakeTrades(market(300))
    lower = fake.trades[250][0]
    pages = list(history.trades(fake, "BTC-USDT", lower_id=lower))
    assert sorted(ids_of(pages)) == [t for t, _ in fake.trades if t > lower]
    assert "after" not in fake.calls[0]


def test_trades_resume_from_a_saved_cursor_continues_without_loss_or_repeats():
    fake = FakeTrades(market())
    ids = [t[0] for t in fake.trades]
    whole = sorted(ids_of(history.trades(fake, "BTC-USDT", lower_id=ids[10], upper_id=ids[900])))
    first_two = list(
        itertools.islice(history.trades(fake, "BTC-USDT", lower_id=ids[10], upper_id=ids[900]), 2)
    )
    rest = list(
        history.trades(
            fake, "BTC-USDT", lower_id=ids[10], upper_id=ids[900], resume=first_two[-1].cursor
        )
    )
    assert sorted(ids_of(first_two) + ids_of(rest)) == whole
    assert len(whole) == 889


def test_trades_when_history_runs_out_before_the_lower_bound_say_so():
    fake = FakeTrades(market(150))
    pages = list(history.trades(fake, "BTC-USDT", lower_id=10, upper_id=fake.trades[-1][0]))
    assert len(ids_of(pages)) == 149
    assert pages[-1] == Page([], None, history_ended=True)


def test_an_empty_id_range_costs_no_request():
    fake = FakeTrades(market(10))
    assert list(history.trades(fake, "BTC-USDT", lower_id=5003, upper_id=5004)) == [Page([], None)]
    assert fake.calls == []


def test_trades_on_an_empty_market_yield_one_final_empty_page():
    assert list(history.trades(FakeTrades([]), "BTC-USDT", lower_id=1, upper_id=5)) == [
        Page([], None, history_ended=True)
    ]


class Scripted:
    """Returns the scripted replies in order (the last one forever) and records the calls."""

    def __init__(self, *replies) -> None:
        self.replies = list(replies)
        self.calls: list[tuple[str, dict, bool]] = []

    def get(self, path, params=None, signed=False, *, row_type=dict):
        self.calls.append((path, dict(params or {}), signed))
        if len(self.calls) > 50:
            raise AssertionError("the fetcher keeps asking: it would loop forever")
        return self.replies[min(len(self.calls), len(self.replies)) - 1]


def test_a_stale_page_overlapping_the_last_is_deduplicated():
    # a cache serves page two with two rows the first page already gave
    first = [trade_row(i, 1000 + i) for i in range(120, 100, -1)]
    second = [trade_row(i, 1000 + i) for i in range(102, 80, -1)]
    fake = Scripted(first, second, [])
    got = ids_of(list(history.trades(fake, "BTC-USDT", upper_id=121)))
    assert sorted(got) == list(range(81, 121)) and len(got) == len(set(got))


@pytest.mark.parametrize(
    "page, reason",
    [
        ([{"instId": "BTC-USDT", "px": "1", "sz": "1", "side": "buy", "ts": "1"}], "tradeId"),
        ([trade_row(5, 1) | {"tradeId": "12a"}], "tradeId"),
        ([trade_row(5, 1) | {"tradeId": 12}], "tradeId"),
        ([trade_row(5, 1) | {"ts": "1.5"}], "ts"),
        ([["5", "1"]], "object"),
        ([trade_row(5, 1, inst="ETH-USDT")], "ETH-USDT"),
    ],
)
def test_hostile_trade_rows_raise_with_the_reason(page, reason):
    with pytest.raises(RestError, match=reason):
        list(history.trades(Scripted(page), "BTC-USDT", upper_id=10))


def test_a_page_that_does_not_advance_raises_instead_of_looping():
    same = [trade_row(i, i) for i in range(50, 40, -1)]
    with pytest.raises(RestError, match="does not advance"):
        list(history.trades(Scripted(same), "BTC-USDT"))  # no bounds: would walk forever
    with pytest.raises(RestError, match="does not advance"):
        list(history.trades(Scripted([trade_row(70, 1)]), "BTC-USDT", upper_id=60))


# ----- candles -----------------------------------------------------------------------------------


def candle(ts: int, confirm: str = "1") -> list[str]:
    return [str(ts), "1", "2", "0.5", "1.5", "10", "15", "15", confirm]


def test_candles_keep_confirmed_bars_within_inclusive_bounds():
    minute = 60_000
    newest_first = [candle(t * minute, "0" if t == 300 else "1") for t in range(300, 0, -1)]

    class FakeCandles:
        calls: list[dict] = []

        def get(self, path, params=None, signed=False, *, row_type=dict):
            assert path == history.CANDLES_PATH and row_type is list
            self.calls.append(params)
            rows = [r for r in newest_first if int(r[0]) < int(params["after"])]
            return rows[: int(params["limit"])]

    fake = FakeCandles()
    pages = list(history.candles(fake, "BTC-USDT", "1m", 50 * minute, 300 * minute))
    got = [int(r["ts"]) // minute for p in pages for r in p.records]
    assert sorted(got) == list(range(50, 300))  # 300 is still forming: not history
    assert pages[0].records[0] == {
        "instId": "BTC-USDT",
        "bar": "1m",
        "ts": str(201 * minute),
        "o": "1",
        "h": "2",
        "l": "0.5",
        "c": "1.5",
        "vol": "10",
        "volCcy": "15",
        "volCcyQuote": "15",
        "confirm": "1",
    }
    assert pages[-1].cursor is None and len(fake.calls) == 3
    resumed = list(
        history.candles(fake, "BTC-USDT", "1m", 50 * minute, 300 * minute, resume=pages[0].cursor)
    )
    assert [r["ts"] for p in resumed for r in p.records] == [
        r["ts"] for p in pages[1:] for r in p.records
    ]


def test_hostile_candle_rows_raise():
    with pytest.raises(RestError, match="9 strings"):
        list(history.candles(Scripted([["1", "2"]]), "BTC-USDT", "1m", 0, 10))
    with pytest.raises(RestError, match="does not advance"):
        list(history.candles(Scripted([candle(500)]), "BTC-USDT", "1m", 0, 100))


# ----- orders and fills --------------------------------------------------------------------------

NOW = 1_800_000_000_000


@pytest.mark.parametrize(
    "start, end, expect",
    [
        (NOW - 2 * DAY, NOW, [("recent", NOW - 2 * DAY, NOW)]),
        (NOW - 7 * DAY, NOW, [("recent", NOW - 7 * DAY, NOW)]),
        (NOW - 30 * DAY, NOW - 8 * DAY, [("archive", NOW - 30 * DAY, NOW - 8 * DAY)]),
        (
            NOW - 30 * DAY,
            NOW - DAY,
            [("recent", NOW - 7 * DAY, NOW - DAY), ("archive", NOW - 30 * DAY, NOW - 7 * DAY - 1)],
        ),
        (NOW, NOW - 1, []),
    ],
)
def test_split_plan_picks_the_recent_endpoint_within_its_window_and_the_archive_beyond(
    start, end, expect
):
    assert history.split_plan(start, end, NOW, 7 * DAY, "recent", "archive") == expect


def order_row(ord_id: int, ctime: int) -> dict:
    return {
        "instType": "SPOT",
        "instId": "BTC-USDT",
        "ordId": str(ord_id),
        "state": "filled",
        "cTime": str(ctime),
        "uTime": str(ctime + 5),
        "source": "",
        "px": "1",
    }


class FakePrivate:
    """orders-history / archive / fills over one list each: newest first by cursor key,
    `after` exclusive, begin/end on the time field; records which endpoint served what."""

    def __init__(self, tables: dict[str, tuple[list[dict], str, str]]) -> None:
        self.tables = tables
        self.calls: list[tuple[str, dict]] = []

    def get(self, path, params=None, signed=False, *, row_type=dict):
        assert signed, "private history must be signed"
        self.calls.append((path, dict(params)))
        rows, key, tkey = self.tables[path]
        out = [
            r
            for r in sorted(rows, key=lambda r: -int(r[key]))
            if ("after" not in params or int(r[key]) < int(params["after"]))
            and int(params["begin"]) <= int(r[tkey]) <= int(params["end"])
        ]
        return out[: int(params["limit"])]


def test_orders_straddling_seven_days_come_from_both_endpoints_exactly_once_and_resume():
    recent = [order_row(10_000 + i, NOW - 7 * DAY + i * 3_600_000) for i in range(150)]
    old = [order_row(1_000 + i, NOW - 40 * DAY + i * 3_600_000) for i in range(130)]
    both = old + recent  # the archive also holds the recent orders
    fake = FakePrivate(
        {
            history.ORDERS_PATH: (recent, "ordId", "cTime"),
            history.ORDERS_ARCHIVE_PATH: (both, "ordId", "cTime"),
        }
    )
    start, end = NOW - 40 * DAY + 5 * 3_600_000, NOW - DAY
    pages = list(history.orders(fake, "SPOT", start, end, now_ms=NOW))
    got = [r["ordId"] for p in pages for r in p.records]
    want = [r["ordId"] for r in both if start <= int(r["cTime"]) <= end]
    assert sorted(got) == sorted(want) and len(got) == len(set(got))
    assert {c[0] for c in fake.calls} == {history.ORDERS_PATH, history.ORDERS_ARCHIVE_PATH}
    assert all(c[1]["instType"] == "SPOT" for c in fake.calls)
    assert pages[0].records[0]["source"] == ""  # OKX's own field, untouched
    # resume from a cursor in the archive step: only the rest of the archive is fetched
    archive_pages = [p for p in pages if p.cursor and p.cursor.startswith("orders-history-archive")]
    cut = archive_pages[0]
    after = list(history.orders(fake, "SPOT", start, end, now_ms=NOW + 60_000, resume=cut.cursor))
    seen = [r["ordId"] for p in pages[: pages.index(cut) + 1] for r in p.records]
    assert sorted(seen + [r["ordId"] for p in after for r in p.records]) == sorted(want)


def test_fills_within_three_days_use_trade_fills_and_add_the_provenance():
    rows = [
        {
            "instType": "SPOT",
            "instId": "BTC-USDT",
            "tradeId": str(-5 if i == 0 else i),
            "ordId": "7",
            "billId": str(900 + i),
            "fillPx": "1",
            "fillSz": "2",
            "side": "buy",
            "ts": str(NOW - DAY + i),
        }
        for i in range(5)
    ]
    fake = FakePrivate({history.FILLS_PATH: (rows, "billId", "ts")})
    pages = list(history.fills(fake, "SPOT", NOW - 2 * DAY, NOW, now_ms=NOW))
    recs = [r for p in pages for r in p.records]
    assert [r["billId"] for r in recs] == [str(900 + i) for i in range(5)]
    assert recs[0]["tradeId"] == "-5" and all(r["source"] == "rest" for r in recs)
    old = list(
        history.fills(
            FakePrivate({history.FILLS_HISTORY_PATH: ([], "billId", "ts")}),
            "SPOT",
            NOW - 20 * DAY,
            NOW - 10 * DAY,
            now_ms=NOW,
        )
    )
    assert old == [Page([], None)]


def test_a_private_page_that_repeats_itself_raises():
    fake = Scripted([order_row(5, NOW - DAY)])
    with pytest.raises(RestError, match="does not advance"):
        list(history.orders(fake, "SPOT", NOW - 2 * DAY, NOW, now_ms=NOW))


def test_a_foreign_resume_cursor_is_refused():
    with pytest.raises(RestError, match="does not belong"):
        list(
            history.orders(
                Scripted([]), "SPOT", NOW - DAY, NOW, now_ms=NOW, resume="fills-history:5"
            )
        )


# ----- snapshots ---------------------------------------------------------------------------------


def test_balances_are_one_record_per_currency_with_provenance():
    reply = [
        {
            "uTime": "1700",
            "totalEq": "10",
            "details": [
                {"ccy": "BTC", "cashBal": "1.5", "uTime": "1690", "eq": "1.5"},
                {"ccy": "USDT", "cashBal": "20", "uTime": ""},
            ],
        }
    ]
    recs = history.balances(Scripted(reply))
    assert recs == [
        {"ccy": "BTC", "cashBal": "1.5", "uTime": "1690", "eq": "1.5", "source": "rest"},
        {"ccy": "USDT", "cashBal": "20", "uTime": "1700", "source": "rest"},
    ]
    with pytest.raises(RestError, match="details"):
        history.balances(Scripted([{"uTime": "1"}]))
    with pytest.raises(RestError, match="cashBal"):
        history.balances(Scripted([{"details": [{"ccy": "BTC", "cashBal": 1.5, "uTime": "1"}]}]))


def test_positions_and_book_snapshots():
    pos = {
        "posId": "3",
        "instId": "BTC-USDT",
        "instType": "MARGIN",
        "pos": "-0.5",
        "uTime": "1700",
        "closeOrderAlgo": [],
    }
    fake = Scripted([pos])
    assert history.positions(fake, "MARGIN") == [{**pos, "source": "rest"}]
    assert fake.calls == [(history.POSITIONS_PATH, {"instType": "MARGIN"}, True)]
    with pytest.raises(RestError, match="posId"):
        history.positions(Scripted([{**pos, "posId": None}]))

    row = {
        "asks": [["2", "1", "0", "1"]],
        "bids": [["1", "3", "0", "2"]],
        "ts": "1700",
        "seqId": 42,
    }
    assert history.book(Scripted([row]), "BTC-USDT", 400) == {
        "instId": "BTC-USDT",
        "channel": "books",
        "ts": "1700",
        "seqId": 42,
        "asks": [["2", "1", "0", "1"]],
        "bids": [["1", "3", "0", "2"]],
        "depth": 400,
        "full": True,
        "source": "rest",
    }
    for bad, reason in [
        ({**row, "asks": [[2, 1]]}, "asks px decimal"),
        ({**row, "seqId": True}, "seqId"),
        ({**row, "ts": 5}, "ts"),
    ]:
        with pytest.raises(RestError, match=reason):
            history.book(Scripted([bad]), "BTC-USDT")
    with pytest.raises(RestError, match="one row"):
        history.book(Scripted([]), "BTC-USDT")


def test_ticker_snapshot_is_checked_and_kept_whole():
    row = {"instId": "BTC-USDT", "last": "2", "ts": "1700", "futureField": "x"}
    assert history.ticker(Scripted([row]), "BTC-USDT") == {**row, "source": "rest"}
    for bad, reason in [
        ({**row, "ts": "17a"}, "ts"),
        ({**row, "instId": "ETH-USDT"}, "asked"),
        ("row", "object"),
    ]:
        with pytest.raises(RestError, match=reason):
            history.ticker(Scripted([bad]), "BTC-USDT")
    with pytest.raises(RestError, match="one row"):
        history.ticker(Scripted([row, row]), "BTC-USDT")


@pytest.mark.parametrize(
    "value, ok",
    [
        ("123", 123),
        ("-5", -5),
        ("", None),
        ("1.0", None),
        (12, None),
        (True, None),
        ("١٢", None),
        (None, None),
    ],
)
def test_as_int_takes_only_strings_of_ascii_digits(value, ok):
    if ok is None:
        with pytest.raises(RestError):
            history.as_int(value, "x")
    else:
        assert history.as_int(value, "x") == ok
