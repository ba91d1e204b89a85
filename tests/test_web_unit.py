"""The read API on fakeredis + mongomock through FastAPI's TestClient: every endpoint answers
what the workers stored, every bad parameter is a 4xx with a clear message, never a 500."""

from __future__ import annotations

import fakeredis
import mongomock
import pytest
from fastapi.testclient import TestClient

from core import keys
from tests.web_fixtures import BEARER, INST, app_for, seed
from tests.workers_fixtures import T0

H = BEARER


@pytest.fixture
def stack():
    r = fakeredis.FakeRedis(decode_responses=True)
    db = mongomock.MongoClient()["okex"]
    seed(db, r)
    return r, db


@pytest.fixture
def client(stack):
    r, db = stack
    with TestClient(app_for(r, db)) as c:
        yield c


def get(client, path, **params):
    return client.get(path, params=params, headers=H)


# ----- current state -----------------------------------------------------------------------------


def test_instruments_lists_those_with_state_or_watermarks(client):
    assert get(client, "/api/v1/instruments").json() == {"items": ["BTC-USDT"]}


def test_ticker_is_the_stored_hash(client, stack):
    body = get(client, f"/api/v1/ticker/{INST}").json()
    assert body == stack[0].hgetall(keys.ticker(INST))
    assert body["last"] == "35000.5" and isinstance(body["ts"], str)


def test_book_depth_slices_the_top_levels(client, stack):
    full = get(client, f"/api/v1/book/{INST}").json()
    two = get(client, f"/api/v1/book/{INST}", depth=2).json()
    assert 1 <= len(full["asks"]) <= 5 and len(two["asks"]) == min(2, len(full["asks"]))
    assert two["asks"] == full["asks"][:2] and two["bids"] == full["bids"][:2]
    assert all(isinstance(px, str) for px, *_ in full["asks"])
    # the full depth is spliced from the stored JSON, the sliced one re-encoded: same shape
    assert set(full) == set(two) == {"instId", "asks", "bids", "ts", "seqId", "channel"}
    stored = stack[0].hgetall(keys.books5(INST))
    assert full["ts"] == stored["ts"] == two["ts"] and full["instId"] == INST


def test_latest_trades_newest_first_with_limit(client):
    items = get(client, f"/api/v1/trades/{INST}/latest", limit=5).json()["items"]
    assert len(items) == 5
    assert [int(t["ts"]) for t in items] == sorted((int(t["ts"]) for t in items), reverse=True)
    assert set(items[0]) == {"tradeId", "px", "sz", "side", "ts"}


def test_current_candle_per_bar_and_missing_bar(client):
    body = get(client, f"/api/v1/candle/{INST}", bar="1m").json()
    assert body["ts"] == str(T0 + 60_000) and body["confirm"] == "0"
    missing = get(client, f"/api/v1/candle/{INST}", bar="5m")
    assert missing.status_code == 404 and "5m candle" in missing.json()["error"]


def test_vwap_latest_and_as_of(client):
    latest = get(client, f"/api/v1/vwap/{INST}").json()
    assert latest == {
        "ts": T0 + 4000,
        "vwap": "35000.4",
        "validated": False,
        "n": 14,
        "window_ms": 300000,
    }
    as_of = get(client, f"/api/v1/vwap/{INST}", ts=str(T0 + 1500)).json()
    assert as_of["ts"] == T0 + 1000 and as_of["validated"] is True and as_of["vwap"] == "35000.1"
    assert get(client, f"/api/v1/vwap/{INST}", ts=str(T0 - 1)).status_code == 404


def test_balances_positions_and_orders(client):
    balances = get(client, "/api/v1/balances").json()["items"]
    assert {b["ccy"]: b["cashBal"] for b in balances} == {"USDT": "100.5", "BTC": "0.5"}
    assert [p["posId"] for p in get(client, "/api/v1/positions").json()["items"]] == ["555"]
    orders = get(client, "/api/v1/orders").json()["items"]
    assert [(o["ordId"], o["state"]) for o in orders] == [("1001", "filled")]  # newest event
    assert get(client, "/api/v1/orders", state="live").json()["items"] == []
    assert len(get(client, "/api/v1/orders", state="filled").json()["items"]) == 1


# ----- history -----------------------------------------------------------------------------------


def test_trades_range_is_half_open_and_oldest_first(client):
    body = get(client, f"/api/v1/trades/{INST}", start=str(T0 + 3), end=str(T0 + 5)).json()
    assert [t["tradeId"] for t in body["items"]] == ["10", "11", "12", "13", "14"]
    assert body["next"] is None
    assert body["items"][0] == {
        "tradeId": "10",
        "px": "35000.5",
        "sz": "0.01",
        "side": "buy",
        "ts": str(T0 + 3),
        "validated": False,
    }


def test_iso_times_equal_ms(client):
    iso = "2023-11-14T22:13:20.003Z"  # T0 + 3 ms
    a = get(client, f"/api/v1/trades/{INST}", start=iso, limit=3).json()
    b = get(client, f"/api/v1/trades/{INST}", start=str(T0 + 3), limit=3).json()
    assert a["items"] == b["items"] and len(a["items"]) == 3


def test_candles_by_source(client):
    okx = get(client, f"/api/v1/candles/{INST}", bar="1m").json()["items"]
    assert [c["source"] for c in okx] == ["okx"] and okx[0]["final"] is True
    assert okx[0]["ts"] == str(T0) and okx[0]["c"] == "35000"
    built = get(client, f"/api/v1/candles/{INST}", bar="1m", source="trades").json()["items"]
    assert len(built) == 1 and built[0]["source"] == "trades"
    assert built[0]["complete"] is True and built[0]["final"] is False
    assert set(built[0]) == {
        "ts",
        "o",
        "h",
        "l",
        "c",
        "vol",
        "volCcy",
        "complete",
        "final",
        "source",
    }


def test_vwap_range(client):
    items = get(
        client, f"/api/v1/vwap/{INST}/range", start=str(T0 + 1000), end=str(T0 + 3000)
    ).json()["items"]
    assert [(v["ts"], v["validated"]) for v in items] == [(T0 + 1000, True), (T0 + 2000, False)]


def test_account_history_and_books(client):
    orders = get(client, "/api/v1/orders/history").json()["items"]
    assert [o["state"] for o in orders] == ["live", "filled"]
    assert len(get(client, "/api/v1/orders/history", instId="ETH-USDT").json()["items"]) == 0
    assert {b["ccy"] for b in get(client, "/api/v1/balances/history").json()["items"]} == {
        "USDT",
        "BTC",
    }
    assert len(get(client, "/api/v1/balances/history", ccy="BTC").json()["items"]) == 1
    assert len(get(client, "/api/v1/positions/history").json()["items"]) == 1
    assert get(client, "/api/v1/fills").json() == {"items": [], "next": None}
    books = get(client, f"/api/v1/books/{INST}").json()["items"]
    assert books and "asks" in books[0] and "_id" not in books[0] and "dt" not in books[0]


# ----- completeness ------------------------------------------------------------------------------


def test_gaps_filters_and_shape(client):
    every = get(client, "/api/v1/gaps").json()
    assert [g["id"] for g in every["items"]] == ["3", "2", "1"] and every["next"] is None
    assert every["items"][2] == {
        "id": "1",
        "channel": "trades",
        "instId": INST,
        "start": T0 + 3,
        "end": T0 + 5,
        "status": "open",
        "reason": "",
        "cause": "reconnect",
    }
    assert [g["id"] for g in get(client, "/api/v1/gaps", status="open").json()["items"]] == [
        "3",
        "1",
    ]
    assert [g["id"] for g in get(client, "/api/v1/gaps", instId=INST).json()["items"]] == ["2", "1"]
    assert [g["id"] for g in get(client, "/api/v1/gaps", channel="books").json()["items"]] == ["3"]
    unrep = get(client, "/api/v1/gaps", status="unrepairable").json()["items"]
    assert [(g["id"], g["reason"]) for g in unrep] == [("2", "REST has no data")]
    window = get(client, "/api/v1/gaps", start=str(T0 + 6), end=str(T0 + 8)).json()["items"]
    assert [g["id"] for g in window] == ["2"]


def test_gaps_page_by_cursor(client):
    first = get(client, "/api/v1/gaps", limit=2).json()
    assert [g["id"] for g in first["items"]] == ["3", "2"] and first["next"]
    rest = get(client, "/api/v1/gaps", limit=2, cursor=first["next"]).json()
    assert [g["id"] for g in rest["items"]] == ["1"] and rest["next"] is None


def test_coverage_per_channel(client):
    body = get(client, f"/api/v1/coverage/{INST}").json()
    assert body["validated_until"] == T0 + 1000
    by = {c["channel"]: c for c in body["channels"]}
    assert set(by) == {"trades", "tickers"}
    assert by["trades"]["first_ms"] == T0 + 1 and by["trades"]["last_ms"] == T0 + 13
    assert by["trades"]["watermark_ms"] == T0 + 20
    assert [g["id"] for g in by["trades"]["open_gaps"]] == ["1"]
    assert [g["id"] for g in by["trades"]["unrepairable_gaps"]] == ["2"]
    assert by["tickers"]["first_ms"] == T0 and by["tickers"]["open_gaps"] == []


# ----- bad parameters: 4xx with a clear message, never 500 ------------------------------------


@pytest.mark.parametrize(
    "path, params, status, words",
    [
        ("/api/v1/ticker/DOGE-USDT", {}, 404, "unknown instId"),
        ("/api/v1/ticker/not an id", {}, 400, "not an OKX instrument id"),
        ("/api/v1/trades/BTC-USDT", {"start": "20", "end": "10"}, 400, "inverted"),
        ("/api/v1/trades/BTC-USDT", {"start": "yesterday"}, 400, "neither milliseconds"),
        ("/api/v1/trades/BTC-USDT", {"end": "99999999999999999999"}, 400, "outside the years"),
        ("/api/v1/trades/BTC-USDT", {"limit": "5000"}, 400, "between 1 and 1000"),
        ("/api/v1/trades/BTC-USDT", {"limit": "0"}, 400, "between 1 and 1000"),
        ("/api/v1/trades/BTC-USDT", {"limit": "lots"}, 400, "limit"),
        ("/api/v1/trades/BTC-USDT/latest", {"limit": "100000"}, 400, "between 1 and 1000"),
        ("/api/v1/candles/BTC-USDT", {"bar": "7m"}, 400, "not an OKX bar"),
        ("/api/v1/candle/BTC-USDT", {"bar": "1h"}, 400, "not an OKX bar"),
        ("/api/v1/candles/BTC-USDT", {"source": "binance"}, 400, "source"),
        ("/api/v1/book/BTC-USDT", {"depth": "50"}, 400, "depth"),
        ("/api/v1/gaps", {"status": "closed"}, 400, "status"),
        ("/api/v1/trades/BTC-USDT", {"cursor": "garbage!"}, 400, "cursor"),
        ("/api/v1/vwap/BTC-USDT", {"ts": "noon"}, 400, "ts"),
        ("/api/v1/orders/history", {"instId": "x y"}, 400, "instrument id"),
    ],
)
def test_bad_parameters_are_clear_4xx(client, path, params, status, words):
    resp = get(client, path, **params)
    assert resp.status_code == status, resp.text
    assert words in resp.json()["error"]


def test_unexpected_errors_are_a_bare_500(stack):
    r, db = stack

    class Broken:
        def __getitem__(self, name):
            raise RuntimeError("mongodb://admin:hunter22@db.internal failed")

    with TestClient(app_for(r, Broken()), raise_server_exceptions=False) as c:
        resp = c.get(f"/api/v1/trades/{INST}", headers=H)
    assert resp.status_code == 500 and resp.json() == {"error": "internal error"}
    assert "hunter22" not in resp.text


def test_instrument_list_is_cached_and_an_unknown_id_rescans_at_most_once_a_second():
    from web.stores import Instruments

    r = fakeredis.FakeRedis(decode_responses=True)
    now = [100.0]
    scans = []
    inst = Instruments(r, r, clock=lambda: now[0])
    real_refresh = inst.refresh
    inst.refresh = lambda: scans.append(now[0]) or real_refresh()  # type: ignore[method-assign]
    assert inst.stale() and inst.refresh() == frozenset()
    r.hset(keys.ticker("ETH-USDT"), "last", "1")
    assert not inst.stale() and not inst.stale("BTC-USDT")  # just read: no rescan for a miss
    now[0] += 1.5
    assert inst.stale("ETH-USDT") and not inst.stale()  # a miss after 1 s: look again
    inst.refresh()
    assert "ETH-USDT" in inst.known()
    now[0] += 6
    assert inst.stale()  # older than the 5 s TTL


def test_a_new_instrument_is_found_without_waiting_for_the_ttl(stack):
    r, db = stack
    app = app_for(r, db)
    now = [1000.0]
    app.state.stores.instruments.clock = lambda: now[0]
    with TestClient(app) as c:
        assert get(c, "/api/v1/ticker/SOL-USDT").status_code == 404
        r.hset(keys.ticker("SOL-USDT"), mapping={"last": "150", "ts": str(T0)})
        assert get(c, "/api/v1/ticker/SOL-USDT").status_code == 404  # rescanned < 1 s ago
        now[0] += 1.01  # past MISS_RESCAN_S, well within the 5 s TTL
        assert get(c, "/api/v1/ticker/SOL-USDT").json()["last"] == "150"
