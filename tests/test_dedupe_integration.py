"""Two redundant feeders' copies through real workers, a real redis-server and pymongo on the
harness's MongoDB wire-protocol server: stored once, the second copy dropped before any write,
and a first copy killed mid-write never makes the second one drop what it did not store.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import redis
from pymongo import MongoClient

from collector.celery_message import task_message
from core import keys
from core.contract import INGEST_MIXED_TASK, INGEST_QUEUE, INGEST_TASKS, make_batch
from tasks.ingest_dedupe import DROPPED
from tests.test_worker_crash import N, assert_stored_exactly_once, paused_child
from tests.test_worker_crash import world as world  # noqa: F401 - the crash tests' fixture
from tests.test_worker_integration import dbname, drained, running_worker
from tests.workers_fixtures import T0, book, order, ticker, trade, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def mongo(mongodb_uri):
    client: MongoClient = MongoClient(mongodb_uri, serverSelectionTimeoutMS=5000)
    yield client
    client.close()


def envelope(kind: str, records: list[dict], producer: str, no: int) -> dict:
    env = make_batch(kind, records, source="ws", producer=producer, batch=no, sent_ms=T0)
    env["shard"] = "s1"
    return env


def dropped() -> float:
    return sum(s.value for m in DROPPED.collect() for s in m.samples if s.name.endswith("_total"))


def test_two_feeders_through_a_real_worker_store_once_and_drop_the_second_copy(redis_url, mongo):
    broker = redis.Redis.from_url(redis_url)
    state = redis.Redis.from_url(redis_url.replace("/0", "/1"))
    db = mongo[dbname(mongo)]
    feed = {
        "trades": [trade(i, ts=T0 + 10 * i) for i in range(60)],
        "books": [book(ts=T0 + 100 * i, seq=i, channel="books5") for i in range(20)],
        "tickers": [ticker(ts=T0 + 200 * i) for i in range(10)],
        "orders": [order(str(i), T0 + i, "filled") for i in range(8)],
    }
    total = sum(len(r) for r in feed.values())
    messages = []
    for producer, step in (("a", 7), ("b", 11)):  # the same records, cut at other places
        no = 0
        for kind, recs in feed.items():
            for i in range(0, len(recs), step):
                no += 1
                env = envelope(kind, recs[i : i + step], producer, no)
                messages.append(task_message(INGEST_TASKS[kind], [env], INGEST_QUEUE, argsrepr="-"))
    # and one mixed task of feeder b's (a quiet publish cycle) holding records of both kinds
    mixed = [
        envelope("trades", feed["trades"][:3], "b", 99),
        envelope("tickers", feed["tickers"][:2], "b", 100),
    ]
    messages.append(task_message(INGEST_MIXED_TASK, [mixed], INGEST_QUEUE, argsrepr="-"))
    before = dropped()
    with running_worker(redis_url, mongo, state, db.name):
        broker.lpush(INGEST_QUEUE, *messages)
        wait_for(lambda: drained(broker), what="both copies")
    counts = {c: db[c].count_documents({}) for c in ("trades", "books", "tickers", "order")}
    assert counts == {"trades": 60, "books": 20, "tickers": 10, "order": 8}
    assert int(state.get(keys.ORDER_COUNTER)) == 8 and state.zcard(keys.trades("BTC-USDT")) == 60
    # one worker handles tasks one at a time: every record of the later copy found its mark
    assert dropped() - before == total + 5
    assert db["dead_letters"].count_documents({}) == 0


def test_a_first_copy_killed_mid_write_leaves_everything_to_the_second(world):  # noqa: F811
    w = world
    first = w.start(CELERY_PREFETCH_MULTIPLIER="1")  # holds only the batch it is writing
    w.send_orders()  # feeder a's batch: the worker stops after its first records
    child = paused_child(w, first)
    # feeder b's copy, cut in two, reaches another worker meanwhile
    w.start()
    events = [order(str(i), T0 + i, "filled") for i in range(N)]
    for no, part in enumerate((events[:4], events[4:])):
        env = envelope("orders", part, "b", no)
        w.broker.lpush(
            INGEST_QUEUE, task_message(INGEST_TASKS["orders"], [env], INGEST_QUEUE, argsrepr="-")
        )
    # stored whole: had anything of the first copy been marked, some of it would be missing
    wait_for(lambda: w.orders() == N, timeout=30, what="the second copy, stored whole")

    def marked() -> set[str]:
        out: set[str] = set()
        for key in w.state.scan_iter(match=keys.SEEN_PREFIX + "orders:*"):
            out |= {m.decode() for m in w.state.smembers(key)}
        return out

    every = {f"{i}:{T0 + i}:filled" for i in range(N)}
    wait_for(lambda: marked() == every, what="the second copy's marks, once it is stored")
    os.kill(child, signal.SIGKILL)  # the first copy's worker dies before it could mark anything
    Path(str(w.pause) + ".held").unlink()
    assert_stored_exactly_once(w)  # its redelivery finds every record stored: one order<N> each
