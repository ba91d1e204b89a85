"""The MongoDB writers through pymongo against a server speaking MongoDB's wire protocol: the
harness's nx-27017 (tests/conftest.py `mongodb_uri`), or a real MongoDB given as MONGODB_URI at
session start. Never skipped in CI.

Each test uses its own throw-away database, dropped afterwards. State goes to fakeredis: these
tests are about MongoDB's behaviour (bulk errors, unique indexes, BSON datetimes, upserts).
"""

from __future__ import annotations

import fakeredis
import pytest

from core.settings import WorkerSettings as Settings
from tasks import documents
from tasks.deadletters import DeadLetters, make_doc
from tasks.ingest import handle_batch
from tasks.writers import Store
from tasks.writers.mongo_history import ensure_indexes, mark_trades_validated
from tests.workers_fixtures import T0, batch, book, one_of_each, trade

pytestmark = [pytest.mark.mongodb, pytest.mark.integration]


@pytest.fixture
def db(mongodb_uri):
    from tasks.clients import make_mongo_client

    client = make_mongo_client(mongodb_uri, 5000)
    database = client.get_default_database()
    ensure_indexes(database, books_retention_s=0)
    yield database
    client.close()


def index_by_key(coll, *fields):
    """The index on exactly these fields (by key, not name: nx-27017 names indexes itself)."""
    for info in coll.index_information().values():
        if [k for k, _ in info["key"]] == list(fields):
            return info
    raise AssertionError(f"no index on {fields}: {coll.index_information()}")


def _write(store, kind, recs):
    good, bad = documents.split_records(kind, recs)
    assert not bad
    return store.write(kind, good)


def test_every_kind_twice_is_stored_once(db):
    store = Store(db, fakeredis.FakeRedis(), Settings(books_sample_ms=0))
    data = one_of_each()
    for kind, recs in data.items():
        _write(store, kind, recs)
    for kind, recs in data.items():
        out = _write(store, kind, recs)
        assert out["inserted"] == 0, kind
    counts = {
        c: db[c].count_documents({})
        for c in ("order", "balance", "position", "trades", "books", "tickers", "candles")
    }
    assert counts == {
        "order": 2,
        "balance": 2,
        "position": 1,
        "trades": 2,
        "books": 1,
        "tickers": 1,
        "candles": 1,
    }
    o = db["order"].find_one({"state": "filled"})
    assert o["dt"].year == 2023 and isinstance(o["cTime"], str) and "tradeId" in o
    assert db["trades"].find_one({"tradeId": "1"})["validated"] is False


def test_partial_duplicates_in_a_batch(db):
    store = Store(db, fakeredis.FakeRedis(), Settings())
    _write(store, "trades", [trade(i) for i in range(0, 50)])
    out = _write(store, "trades", [trade(i) for i in range(25, 100)])
    assert (out["inserted"], out["duplicates"]) == (50, 25)
    assert db["trades"].count_documents({}) == 100
    assert mark_trades_validated(db, "BTC-USDT", ["1", "2"]) == 2


def test_books_sampling_and_unique_indexes(db):
    store = Store(db, fakeredis.FakeRedis(), Settings(books_sample_ms=1000))
    _write(store, "books", [book(ts=T0 + i * 100, seq=i) for i in range(25)])
    assert db["books"].count_documents({}) == 3
    assert index_by_key(db["candles"], "instId", "bar", "ts").get("unique") is True
    assert not index_by_key(db["books"], "instId", "channel", "dt").get("unique")


def test_handle_batch_and_dead_letters(db):
    r = fakeredis.FakeRedis()
    out = handle_batch(
        "trades",
        {"v": 9},
        store=Store(db, r, Settings()),
        dead=DeadLetters(db, r),
        settings=Settings(),
        task_name="tasks.ingest.trades",
        task_id="t1",
        retries=0,
    )
    assert out.dead_letter == "t1"
    again = make_doc(
        task="tasks.ingest.trades",
        task_id="t1",
        args=[{"v": 9}],
        reason="bad_batch",
        exc=None,
        retries=0,
    )
    assert DeadLetters(db, r).put(again) == "mongo"  # the same dead letter twice: one document
    assert db["dead_letters"].count_documents({}) == 1
    out = handle_batch(
        "trades",
        batch("trades", [trade(1)]),
        store=Store(db, r, Settings()),
        dead=DeadLetters(db, r),
        settings=Settings(),
        task_name="x",
        task_id="t2",
        retries=0,
    )
    assert out.written["inserted"] == 1
