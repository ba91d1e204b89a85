"""An unexpected exception on the worker side is a counted dead letter with its reason, never a
crashed task or a retry loop; transient storage errors keep their retries (tasks/ingest.py)."""

from __future__ import annotations

import fakeredis
import mongomock
import pytest
from bson.errors import InvalidDocument
from pymongo.errors import AutoReconnect

from core.contract import INGEST_MIXED_TASK, INGEST_TASKS
from core.settings import WorkerSettings as Settings
from tasks import documents
from tasks.deadletters import DeadLetters
from tasks.ingest import DEAD, handle_batch, handle_batches
from tasks.writers import Store
from tests.workers_fixtures import batch, ticker, trade

S = Settings(retry_max=3, retry_base_s=1.0, retry_cap_s=8.0)


@pytest.fixture
def db():
    return mongomock.MongoClient()["okex"]


@pytest.fixture
def r():
    return fakeredis.FakeRedis()


def dead_count(kind: str, reason: str) -> float:
    return DEAD.labels(kind, reason)._value.get()


class RaisingWriter:
    """A writer with a bug: it raises whatever it is given."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def write_many(self, parts):
        raise self.exc


def run(kind, payload, db, r, store, retries=0):
    return handle_batch(
        kind,
        payload,
        store=store,
        dead=DeadLetters(db, r),
        settings=S,
        task_name=INGEST_TASKS[kind],
        task_id="tid-9",
        retries=retries,
    )


@pytest.mark.parametrize("exc", [KeyError("price"), ZeroDivisionError(), RecursionError("deep")])
def test_a_writer_that_raises_is_a_counted_dead_letter_not_a_retry(exc, db, r):
    before = dead_count("trades", "error")
    out = run("trades", batch("trades", [trade(1), trade(2)]), db, r, RaisingWriter(exc))
    # no retry, no exception out of the task: one dead letter with the reason and the error
    assert out.retry_in is None and out.dead_letters == ["tid-9"]
    doc = db["dead_letters"].find_one({"_id": "tid-9"})
    assert doc["reason"] == "error" and doc["exc_type"] == type(exc).__name__
    assert doc["records"] == 2 and doc["args"][0]["kind"] == "trades"  # replayable
    assert dead_count("trades", "error") == before + 1


def test_transient_writer_errors_keep_their_retries(db, r):
    out = run("trades", batch("trades", [trade(1)]), db, r, RaisingWriter(AutoReconnect("x")))
    assert out.retry_in is not None and out.retry_in > 0
    assert db["dead_letters"].count_documents({}) == 0


def test_a_bug_outside_the_writers_is_an_internal_error_dead_letter(db, r, monkeypatch):
    def broken_split(kind, records):
        raise AttributeError("'NoneType' object has no attribute 'get'")

    monkeypatch.setattr(documents, "split_records", broken_split)
    before = dead_count("tickers", "internal_error")
    items = [
        ("tickers", batch("tickers", [ticker()]), INGEST_TASKS["tickers"], "mix-1:0"),
        ("trades", batch("trades", [trade(5)]), INGEST_TASKS["trades"], "mix-1:1"),
    ]
    out = handle_batches(
        items, store=Store(db, r, S), dead=DeadLetters(db, r), settings=S, retries=0
    )
    assert out.retry_in is None and out.dead_letters == ["mix-1:0", "mix-1:1"]
    docs = {d["_id"]: d for d in db["dead_letters"].find()}
    assert {d["reason"] for d in docs.values()} == {"internal_error"}
    assert docs["mix-1:0"]["task"] == INGEST_TASKS["tickers"]  # each under its own task name
    assert docs["mix-1:1"]["exc_type"] == "AttributeError"
    assert dead_count("tickers", "internal_error") == before + 1
    assert INGEST_MIXED_TASK not in {d["task"] for d in docs.values()}


def test_a_dead_letter_the_store_refuses_is_kept_as_text_not_retried_forever(db, r):
    class Refusing(DeadLetters):
        calls = 0

        def put(self, doc):
            Refusing.calls += 1
            if Refusing.calls == 1:
                raise InvalidDocument("cannot encode object: <object>")
            return super().put(doc)

    out = handle_batch(
        "trades",
        batch("trades", [trade(1)]),
        store=RaisingWriter(TypeError("bug")),
        dead=Refusing(db, r),
        settings=S,
        task_name=INGEST_TASKS["trades"],
        task_id="tid-10",
        retries=0,
    )
    assert out.retry_in is None and out.dead_letters == ["tid-10"]
    doc = db["dead_letters"].find_one({"_id": "tid-10"})
    assert isinstance(doc["args"][0], str) and "trades" in doc["args"][0]
    assert "InvalidDocument" in doc["unstorable"]


def test_a_dead_letter_with_nowhere_to_go_keeps_the_message(db, r):
    class Down(DeadLetters):
        def put(self, doc):
            raise ConnectionError("mongo and redis down")

    out = handle_batch(
        "trades",
        batch("trades", [trade(1)]),
        store=RaisingWriter(TypeError("bug")),
        dead=Down(db, r),
        settings=S,
        task_name=INGEST_TASKS["trades"],
        task_id="tid-11",
        retries=0,
    )
    assert out.retry_in == S.retry_cap_s  # kept: retried at the longest backoff
