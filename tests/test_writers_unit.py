"""Writers against fakes (fakeredis with Lua, mongomock): fields, idempotency, versioning, bounds."""

from __future__ import annotations

import datetime as dt
import itertools
import random

import fakeredis
import mongomock
import pytest
from pymongo.errors import BulkWriteError

from core import keys
from core.settings import WorkerSettings as Settings
from tasks import documents
from tasks.writers import Store, insert_history
from tasks.writers.mongo_history import ensure_indexes, mark_trades_validated
from tasks.writers.redis_state import SCRIPTS
from tests.workers_fixtures import (
    T0,
    balance,
    book,
    candle,
    decode,
    one_of_each,
    order,
    position,
    ticker,
    trade,
)

SETTINGS = Settings(books_sample_ms=0)


@pytest.fixture
def db():
    database = mongomock.MongoClient()["okex"]
    ensure_indexes(database)
    return database


@pytest.fixture
def r():
    return fakeredis.FakeRedis()


@pytest.fixture
def store(db, r):
    return Store(db, r, SETTINGS)


def checked(kind, recs):
    good, bad = documents.split_records(kind, recs)
    assert not bad
    return good


def write(store, kind, recs):
    return store.write(kind, checked(kind, recs))


def redis_dump(r) -> dict:
    out = {}
    for key in sorted(r.keys()):
        t = r.type(key)
        if t == b"hash":
            out[key] = decode(r.hgetall(key))
        elif key == keys.DERIVE_DIRTY.encode():
            # rebuild requests: a redelivered batch asks again (a newer score), same minutes
            out[key] = r.zrange(key, 0, -1)
        elif t == b"zset":
            out[key] = r.zrange(key, 0, -1, withscores=True)
        else:
            out[key] = r.get(key)
    return out


def mongo_dump(db) -> dict:
    return {c: sorted(db[c].find(), key=lambda d: d["_id"]) for c in db.list_collection_names()}


# ----- every kind, with the original design's fields ----------------------------------------------


def test_every_kind_is_stored_with_the_original_fields(store, db, r):
    for kind, recs in one_of_each().items():
        write(store, kind, recs)

    o = db["order"].find_one({"ordId": "1001", "state": "filled"})
    for f in ("instType", "instId", "ordId", "tradeId", "cTime"):
        assert isinstance(o[f], str) and o[f] != "" or f == "tradeId"
    assert o["_id"] == f"1001:{T0 + 10}:filled" and isinstance(o["dt"], dt.datetime)
    assert db["order"].count_documents({}) == 2

    b = db["balance"].find_one({"ccy": "USDT"})
    assert (b["ccy"], b["cashBal"], b["uTime"]) == ("USDT", "100.5", str(T0))
    p = db["position"].find_one({"posId": "555"})
    for f in ("posId", "tradeId", "instId", "instType", "pos", "ccy", "uTime"):
        assert isinstance(p[f], str) and p[f]
    t = db["trades"].find_one({"tradeId": "1"})
    assert t["validated"] is False and t["px"] == "35000.5" and t["ts"] == str(T0 + 1)
    assert db["tickers"].find_one()["last"] == "35000.5"
    # only the confirmed candle is history; the forming one is current state only
    assert [c["confirm"] for c in db["candles"].find()] == ["1"]
    bk = db["books"].find_one()
    assert bk["seqId"] == 100 and bk["asks"][0][0] == "35000.6" and bk["ts"] == str(T0)

    # Redis: order<N> per event, keys per currency / position / instrument
    assert int(r.get(keys.ORDER_COUNTER)) == 2
    h = decode(r.hgetall("order2"))
    assert {k: h[k] for k in ("instType", "instId", "ordId", "tradeId", "cTime")} == {
        "instType": "SWAP",
        "instId": "BTC-USDT-SWAP",
        "ordId": "1001",
        "tradeId": "t1001",
        "cTime": str(T0 - 5000),
    }
    assert decode(r.hgetall("balance:USDT")) == {
        "ccy": "USDT",
        "cashBal": "100.5",
        "uTime": str(T0),
    }
    assert decode(r.hgetall("balance:BTC"))["cashBal"] == "0.5"
    assert decode(r.hgetall("position:555")) == {
        "posId": "555",
        "tradeId": "77",
        "instId": "BTC-USDT-SWAP",
        "instType": "SWAP",
        "pos": "3",
        "ccy": "USDT",
        "uTime": str(T0),
    }
    assert decode(r.hgetall("ticker:BTC-USDT"))["last"] == "35000.5"
    assert decode(r.hgetall("book:BTC-USDT"))["bidPx"] == "35000.4"
    assert decode(r.hgetall("books5:BTC-USDT"))["seqId"] == "100"
    assert r.zcard("trades:BTC-USDT") == 2
    assert decode(r.hgetall("candle:BTC-USDT:1m"))["ts"] == str(T0 + 60_000)
    assert r.ttl("ticker:BTC-USDT") > 0 and r.ttl("order1") > 0 and r.ttl("balance:USDT") == -1


# ----- idempotency ----------------------------------------------------------------------------------


def test_a_duplicated_batch_adds_nothing(store, db, r):
    data = one_of_each()
    for kind, recs in data.items():
        write(store, kind, recs)
    before_m, before_r = mongo_dump(db), redis_dump(r)
    for kind, recs in data.items():
        out = write(store, kind, recs)
        assert out["inserted"] == 0, kind
    assert mongo_dump(db) == before_m
    assert redis_dump(r) == before_r


def test_order_events_get_one_number_each_even_when_redelivered(store, r):
    events = [order(str(i), T0 + i, s) for i in range(20) for s in ("live", "filled")]
    assert write(store, "orders", events)["state_applied"] == 40
    again = write(store, "orders", events[::-1])  # redelivered, in another order
    assert again["state_applied"] == 0 and again["state_stale"] == 40
    assert int(r.get(keys.ORDER_COUNTER)) == 40
    numbered = [decode(r.hgetall(f"order{n}")) for n in range(1, 41)]
    assert len({(h["ordId"], h["uTime"], h["state"]) for h in numbered}) == 40


def test_state_scripts_are_loaded_again_after_redis_forgot_them(store, r):
    # Scripts are called by SHA: a fresh Redis, a restart without persistence of the script cache
    # or SCRIPT FLUSH must cost one reload, never a failed batch or a half-written one.
    write(store, "tickers", [ticker(ts=T0, last="1")])
    write(store, "orders", [order("1", T0, "live")])
    r.script_flush()
    assert write(store, "tickers", [ticker(ts=T0 + 1, last="2")])["state_applied"] == 1
    assert decode(r.hgetall(keys.ticker("BTC-USDT")))["last"] == "2"
    r.script_flush()
    out = write(store, "orders", [order("1", T0 + 1, "filled"), order("1", T0, "live")])
    assert (out["state_applied"], out["state_stale"]) == (1, 1)  # the redelivered one is known
    assert int(r.get(keys.ORDER_COUNTER)) == 2


def test_several_kinds_in_one_round_trip_count_as_separate_writes(db, r):
    parts = [
        ("tickers", checked("tickers", [ticker(ts=T0 + 1, last="2")])),
        ("orders", checked("orders", [order("1", T0, "live"), order("1", T0, "live")])),
        ("trades", checked("trades", [trade(1), trade(2)])),
        ("books", []),
    ]
    store = Store(db, r, SETTINGS)
    one_by_one = [
        Store(mongomock.MongoClient()["okex"], fakeredis.FakeRedis(), SETTINGS).write(kind, recs)
        for kind, recs in parts
    ]
    for src in SCRIPTS.values():  # as after the first batch (see the test above)
        r.script_load(src)
    pipelines = []
    real_pipeline = r.pipeline
    r.pipeline = lambda *a, **kw: pipelines.append(1) or real_pipeline(*a, **kw)
    together = store.write_many(parts)
    assert together == one_by_one and len(pipelines) == 1
    assert [w["state_applied"] for w in together] == [1, 1, 2, 0]
    assert decode(r.hgetall(keys.ticker("BTC-USDT")))["last"] == "2"


# ----- versioning: reordered batches end at the newest state -------------------------------------------


def versions():
    """Batches of every state kind with strictly newer versions, oldest first."""
    out = []
    for i in range(6):
        t = T0 + i * 1000
        out.append(
            {
                "balances": [balance("USDT", f"{100 + i}", t)],
                "positions": [position("555", str(i), t)],
                "tickers": [ticker(ts=t, last=f"{35000 + i}")],
                "books": [book(ts=t, seq=100 + i, bid=f"{34000 + i}")],
                "candles": [
                    candle(
                        ts=T0 + (i // 2) * 60_000, vol=str(10 + i), confirm="1" if i % 2 else "0"
                    )
                ],
                "trades": [trade(i)],
                "orders": [order("9", t, "partially_filled")],
            }
        )
    return out


def test_reordered_batches_leave_redis_at_the_newest_state():
    batches = versions()
    reference = fakeredis.FakeRedis()
    ref_store = Store(mongomock.MongoClient()["okex"], reference, SETTINGS)
    for b in batches:
        for kind, recs in b.items():
            write(ref_store, kind, recs)
    expected = {k: v for k, v in redis_dump(reference).items() if not k.startswith(b"order")}
    assert decode(reference.hgetall("balance:USDT"))["cashBal"] == "105"
    assert decode(reference.hgetall("candle:BTC-USDT:1m"))["confirm"] == "1"

    rng = random.Random(7)
    orders_seen = set()
    for _ in range(12):
        perm = batches[:]
        rng.shuffle(perm)
        r = fakeredis.FakeRedis()
        st = Store(mongomock.MongoClient()["okex"], r, SETTINGS)
        for b in perm:
            for kind, recs in b.items():
                write(st, kind, recs)
        got = {k: v for k, v in redis_dump(r).items() if not k.startswith(b"order")}
        assert got == expected
        orders_seen.add(int(r.get(keys.ORDER_COUNTER)))
    assert orders_seen == {6}


def test_newest_in_one_batch_wins_and_ties_keep_the_later(store, r):
    recs = [
        ticker(ts=T0 + 5, last="new"),
        ticker(ts=T0 + 1, last="old"),
        ticker(ts=T0 + 5, last="tie"),
    ]
    write(store, "tickers", recs)
    assert decode(r.hgetall("ticker:BTC-USDT"))["last"] == "tie"
    write(store, "tickers", [ticker(ts=T0 + 4, last="late")])
    assert decode(r.hgetall("ticker:BTC-USDT"))["last"] == "tie"


def test_confirmed_candle_is_never_overwritten_by_a_forming_one(store, db, r):
    write(store, "candles", [candle(vol="50", c="2", confirm="1")])
    write(store, "candles", [candle(vol="40", c="1", confirm="0")])  # older forming push, late
    assert decode(r.hgetall("candle:BTC-USDT:1m"))["confirm"] == "1"
    write(
        store,
        "candles",
        [
            candle(ts=T0 + 60_000, vol="1", confirm="0"),
            candle(ts=T0 + 60_000, vol="3", c="9", confirm="0"),
        ],
    )
    assert decode(r.hgetall("candle:BTC-USDT:1m"))["c"] == "9"
    write(store, "candles", [candle(ts=T0 + 60_000, vol="2", confirm="0")])  # less volume: older
    assert decode(r.hgetall("candle:BTC-USDT:1m"))["vol"] == "3"
    assert [(c["ts"], c["c"]) for c in db["candles"].find()] == [(str(T0), "2")]


def test_books_versioned_by_ts_then_seq(store, r):
    write(store, "books", [book(ts=T0, seq=5, bid="1")])
    write(store, "books", [book(ts=T0, seq=4, bid="2")])
    assert decode(r.hgetall("book:BTC-USDT"))["bidPx"] == "1"
    write(store, "books", [book(ts=T0 + 1, seq=6, bid="3")])
    assert decode(r.hgetall("book:BTC-USDT"))["bidPx"] == "3"
    assert decode(r.hgetall("books5:BTC-USDT"))["seqId"] == "6"


# ----- bounds -------------------------------------------------------------------------------------------


def test_latest_trades_are_capped_and_late_trades_do_not_evict_newer(db, r):
    st = Store(db, r, Settings(trades_cap=10))
    write(st, "trades", [trade(i) for i in range(100, 130)])
    write(st, "trades", [trade(i) for i in range(1, 5)])  # late, older trades
    ids = [documents.orjson.loads(m)["tradeId"] for m in r.zrange("trades:BTC-USDT", 0, -1)]
    assert ids == [str(i) for i in range(120, 130)]
    assert db["trades"].count_documents({}) == 34


def test_books_history_keeps_one_push_per_window_plus_full_snapshots(db, r):
    st = Store(db, r, Settings(books_sample_ms=1000))
    pushes = [book(ts=T0 + i * 100, seq=i) for i in range(25)]  # 2.5 s of pushes every 100 ms
    write(st, "books", pushes + [book(ts=T0 + 150, seq=None, channel="books", full=True)])
    write(st, "books", pushes)
    ids = sorted(d["_id"] for d in db["books"].find())
    assert ids == sorted(
        [f"BTC-USDT:books5:w{T0 + w}" for w in (0, 1000, 2000)]
        + [f"BTC-USDT:books:full:{T0 + 150}"]
    )


# ----- MongoDB errors --------------------------------------------------------------------------------------


class _FailingCollection:
    def __init__(self, details):
        self.details = details

    def insert_many(self, docs, ordered):
        assert ordered is False
        raise BulkWriteError(self.details)


def test_duplicate_keys_count_as_success_other_write_errors_raise():
    dup = {"writeErrors": [{"code": 11000, "index": 0}], "nInserted": 1, "writeConcernErrors": []}
    got = insert_history(_FailingCollection(dup), [{"_id": 1}, {"_id": 2}])
    assert (got.inserted, got.duplicates) == (1, 1)
    bad = {"writeErrors": [{"code": 11000, "index": 0}, {"code": 121, "index": 1}], "nInserted": 0}
    with pytest.raises(BulkWriteError):
        insert_history(_FailingCollection(bad), [{"_id": 1}, {"_id": 2}])
    wc = {"writeErrors": [], "writeConcernErrors": [{"code": 64}], "nInserted": 2}
    with pytest.raises(BulkWriteError):
        insert_history(_FailingCollection(wc), [{"_id": 1}, {"_id": 2}])


def test_unique_indexes_exist_and_guard_the_natural_key(db):
    info = db["trades"].index_information()
    assert info["natural_key"]["unique"] is True
    assert list(db["order"].index_information()["natural_key"]["key"]) == [
        ("ordId", 1),
        ("uTime", 1),
        ("state", 1),
    ]
    db["trades"].insert_one({"_id": "x", "instId": "A", "tradeId": "1"})
    with pytest.raises(Exception):
        db["trades"].insert_one({"_id": "y", "instId": "A", "tradeId": "1"})


def test_mark_trades_validated(store, db):
    write(store, "trades", [trade(1), trade(2)])
    assert mark_trades_validated(db, "BTC-USDT", ["1"]) == 1
    assert {d["tradeId"]: d["validated"] for d in db["trades"].find()} == {"1": True, "2": False}


# ----- pure document rules ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind,rec,why",
    [
        ("orders", {"ordId": "1", "uTime": "1"}, "without"),
        ("trades", dict(trade(1), ts="12:00"), "not milliseconds"),
        ("books", dict(book(), seqId="7"), "seqId"),
        ("books", dict(book(), asks="x"), "lists"),
    ],
)
def test_records_that_cannot_be_keyed_are_bad(kind, rec, why):
    good, bad = documents.split_records(kind, [rec])
    assert good == [] and why in bad[0][1]


def test_natural_ids_are_deterministic_and_times_are_strings():
    rec = documents.check_record("trades", dict(trade(5), ts=T0 + 5))  # an int ts is normalised
    assert rec["ts"] == str(T0 + 5)
    assert documents.natural_id("trades", rec) == "BTC-USDT:5"
    combos = itertools.product(["orders"], [order("7", T0, "live")])
    for kind, r in combos:
        assert documents.mongo_doc(kind, documents.check_record(kind, r))["_id"] == f"7:{T0}:live"
