"""What our code needs from the wire-protocol server, through pymongo: the queries the audit and
the dead-letter commands run, the collection `order`, and `python -m tasks.migrate`. Each test
here failed against plain nx-27017 0.8.1 and passes with localrun/mongo_wire_main.py's fixes
(docs/mongodb-wire.md)."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import fakeredis
import pytest
from pymongo import MongoClient

from core.settings import WorkerSettings
from tasks.backfill.audit import stored_trade_ids
from tasks.deadletters import DeadLetters, make_doc
from tasks.writers import Store
from tasks.writers.mongo_history import ensure_indexes
from tests.workers_fixtures import T0, trade

pytestmark = [pytest.mark.mongodb, pytest.mark.integration]

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def db(mongodb_uri):
    client: MongoClient = MongoClient(mongodb_uri, serverSelectionTimeoutMS=5000)
    yield client.get_default_database()
    client.close()


def test_the_audit_window_is_exact_to_the_millisecond(db):
    """SQLite's datetime() drops milliseconds; the audit's $gte/$lte window must not."""
    recs = [trade(i) for i in range(6)]
    offsets = [-1, 0, 1, 500, 999, 1000]
    for rec, off in zip(recs, offsets, strict=True):
        rec["ts"] = str(T0 + off)
    Store(db, fakeredis.FakeRedis(), WorkerSettings()).write("trades", recs)
    inst = recs[0]["instId"]
    got = stored_trade_ids(db, inst, T0, T0 + 999)
    assert sorted(got, key=int) == [r["tradeId"] for r in recs[1:5]]
    assert sorted(stored_trade_ids(db, inst, T0 + 1, T0 + 1), key=int) == [recs[2]["tradeId"]]
    start = datetime.fromtimestamp(T0 / 1000, tz=UTC)
    later = db["trades"].count_documents({"dt": {"$gt": start, "$lt": start + timedelta(0, 1)}})
    assert later == 3


def test_dead_letter_replay_keeps_dates_as_dates(db):
    dead = DeadLetters(db, fakeredis.FakeRedis())
    for i in range(3):
        doc = make_doc(
            task="tasks.ingest.trades",
            task_id=f"t{i}",
            args=[{"v": 1, "kind": "trades", "records": []}],
            reason="error",
            exc=None,
            retries=0,
        )
        doc["time"] = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(milliseconds=i)
        assert dead.put(doc) == "mongo"
    assert [d["_id"] for d in dead.list(status="new")] == ["t2", "t1", "t0"]
    sent = []
    app = SimpleNamespace(
        send_task=lambda name, args, kwargs: sent.append(name) or SimpleNamespace(id="new-1")
    )
    assert dead.replay(app, ids=["t1"]) == ["new-1"]
    stored = db["dead_letters"].find_one({"_id": "t1"})
    assert stored["status"] == "replayed" and stored["replay_task_id"] == "new-1"
    assert isinstance(stored["replayed_at"], datetime)  # plain nx-27017 stored a string here
    since = datetime.now(UTC) - timedelta(minutes=5)
    assert db["dead_letters"].count_documents({"replayed_at": {"$gte": since}}) == 1


def test_order_is_an_ordinary_collection(db):
    db["order"].insert_one({"_id": "1:2:live", "ordId": "1", "uTime": "2", "state": "live"})
    db["order"].insert_one({"_id": "1:3:filled", "ordId": "1", "uTime": "3", "state": "filled"})
    assert "order" in db.list_collection_names()
    assert [d["state"] for d in db["order"].find({"ordId": "1"}).sort("uTime", -1)] == [
        "filled",
        "live",
    ]
    ensure_indexes(db)
    keys = [[k for k, _ in i["key"]] for i in db["order"].index_information().values()]
    assert ["ordId", "uTime", "state"] in keys
    db.drop_collection("order")
    assert "order" not in db.list_collection_names()


def test_migrate_creates_the_indexes_through_pymongo(mongodb_uri, db):
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "MONGODB_URI": mongodb_uri}
    env["MONGODB_DB"] = db.name
    proc = subprocess.run(
        [sys.executable, "-m", "tasks.migrate"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"in database {db.name!r}" in proc.stdout and "order.natural_key" in proc.stdout
    unique = [i for i in db["trades"].index_information().values() if i.get("unique")]
    assert [[k for k, _ in i["key"]] for i in unique] == [["instId", "tradeId"]]
