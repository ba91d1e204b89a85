"""Paging: every trade of a range exactly once, in (ts, tradeId-key) order, whatever the limit and
however many trades share a millisecond; a cursor only continues the query it came from."""

from __future__ import annotations

import fakeredis
import mongomock
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core import keys
from tasks.writers import Store
from tests.web_fixtures import BEARER, INST, SETTINGS, app_for, write
from tests.workers_fixtures import T0, trade
from web import paging
from web.history import page_queries
from web.paging import Position
from web.params import TimeRange


def _stack(offsets: list[int]):
    r = fakeredis.FakeRedis(decode_responses=True)
    db = mongomock.MongoClient()["okex"]
    r.hset(keys.watermark_key("trades", INST), mapping={"ts": str(T0), "id": ""})
    if offsets:
        recs = [trade(1000 + i, ts=T0 + off) for i, off in enumerate(offsets)]
        write(Store(db, r, SETTINGS), "trades", recs)
    return r, db


def _all_pages(client, limit, **params):
    seen, cursor, pages = [], None, 0
    while True:
        q = {**params, "limit": str(limit)}
        if cursor:
            q["cursor"] = cursor
        body = client.get(f"/api/v1/trades/{INST}", params=q, headers=BEARER).json()
        assert len(body["items"]) <= limit
        seen += body["items"]
        pages += 1
        cursor = body["next"]
        if cursor is None:
            return seen, pages
        assert body["items"], "a page with a next cursor is never empty"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    offsets=st.lists(st.integers(0, 6), max_size=40),
    limit=st.integers(1, 9),
    start=st.integers(0, 7),
    width=st.integers(0, 8),
)
def test_paging_returns_each_trade_of_the_range_once_in_order(offsets, limit, start, width):
    r, db = _stack(offsets)
    lo, hi = T0 + start, T0 + start + width
    expected = sorted(
        ((T0 + off, f"{INST}:{1000 + i}") for i, off in enumerate(offsets) if lo <= T0 + off < hi)
    )
    with TestClient(app_for(r, db)) as client:
        seen, pages = _all_pages(client, limit, start=str(lo), end=str(hi))
    got = [(int(t["ts"]), f"{INST}:{t['tradeId']}") for t in seen]
    assert got == expected
    assert pages == max(1, -(-len(expected) // limit))  # one look-ahead: no empty last page


def test_a_cursor_may_change_the_limit_but_not_the_query():
    r, db = _stack([0] * 10 + [1] * 10)
    with TestClient(app_for(r, db)) as client:
        url = f"/api/v1/trades/{INST}"
        first = client.get(url, params={"limit": "3", "end": str(T0 + 5)}, headers=BEARER).json()
        more = client.get(
            url, params={"limit": "50", "end": str(T0 + 5), "cursor": first["next"]}, headers=BEARER
        ).json()
        assert len(first["items"]) + len(more["items"]) == 20 and more["next"] is None
        moved = client.get(
            url, params={"end": str(T0 + 6), "cursor": first["next"]}, headers=BEARER
        )
        assert moved.status_code == 400 and "another query" in moved.json()["error"]
        other = client.get(
            "/api/v1/vwap/BTC-USDT/range", params={"cursor": first["next"]}, headers=BEARER
        )
        assert other.status_code == 400


def test_cursor_round_trip_and_forgeries():
    fp = paging.fingerprint("/p", {"a": "1", "b": None})
    assert fp == paging.fingerprint("/p", {"a": "1"})
    assert fp != paging.fingerprint("/p", {"a": "2"}) != paging.fingerprint("/q", {"a": "1"})
    pos = Position(T0, "BTC-USDT:7")
    assert paging.decode(paging.encode(fp, pos), fp) == pos
    assert paging.decode(None, fp) is None
    for bad in ("x", "!!!!", "W10", paging.encode(fp, pos)[:-3], "eyJhIjoxfQ"):
        with pytest.raises(paging.ApiError) as exc:
            paging.decode(bad, fp)
        assert exc.value.status == 400


def test_after_a_cursor_two_plain_queries_read_the_rest_of_the_ms_then_later():
    rng = TimeRange(T0, T0 + 100)
    first = page_queries({"instId": INST}, rng, None)
    assert len(first) == 1 and set(first[0][0]["dt"]) == {"$gte", "$lt"}
    same, later = page_queries({"instId": INST}, rng, Position(T0 + 5, "BTC-USDT:9"))
    assert same[0]["_id"] == {"$gt": "BTC-USDT:9"} and same[1] == [("_id", 1)]
    assert set(later[0]["dt"]) == {"$gt", "$lt"} and later[1] == [("dt", 1), ("_id", 1)]
    assert not any("$or" in q for q, _ in first + [same, later])


def test_a_cursor_past_the_end_of_its_millisecond_reads_one_query():
    rng = TimeRange(T0, T0 + 100)
    (only,) = page_queries({"instId": INST}, rng, Position(T0 + 5, ""))
    assert only[0]["dt"]["$gt"] is not None and "_id" not in only[0]


def test_the_cursor_skips_the_same_ms_query_only_when_the_look_ahead_is_later():
    # 2 trades at +0, 2 at +1: a page of 2 ends where a later ms starts, a page of 3 does not
    r, db = _stack([0, 0, 1, 1])
    from web.history import read_page

    coll = db[keys.TRADES]
    _, pos2 = read_page(coll, {"instId": INST}, TimeRange(T0, T0 + 9), None, 2)
    _, pos3 = read_page(coll, {"instId": INST}, TimeRange(T0, T0 + 9), None, 3)
    assert pos2 == Position(T0, "") and pos3 == Position(T0 + 1, f"{INST}:1002")
