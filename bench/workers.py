"""Worker throughput: messages/s stored by ONE worker process, batched vs one message per task.

    .venv/bin/python -m bench.workers [--messages 100000] [--single 3000] [--batch 100 500]

Starts a private redis-server (broker on db 0, state on db 1), publishes feeder-shaped batches
by task name, then starts one in-process worker (solo pool: one process, one thread) and times
how long it takes to store them all (the worker's startup is timed separately and subtracted).
MongoDB cannot run here, so the worker's history writes go to a sink that BSON-encodes every
document as pymongo would and drops it: the client-side share of MongoDB's cost. Separately:
bson.encode alone, mongomock insert_many (not a performance reference), and a real server when
MONGODB_URI is set.
"""

from __future__ import annotations

import argparse
import itertools
import time
from types import SimpleNamespace

import bson
import redis

from core import settings as settings_mod
from core.contract import INGEST_QUEUE, INGEST_TASKS
from core.settings import WorkerSettings as Settings
from localrun.redis_server import RedisServer
from tasks import clients, documents, ingest
from tasks.app import app
from tests.workers_fixtures import T0, batch, book, order, ticker, trade

INSTRUMENTS = [f"COIN{i}-USDT" for i in range(20)]


class BsonSink:
    """A MongoDB database stand-in that BSON-encodes what it is given and keeps nothing."""

    def __init__(self):
        self.docs = 0

    def __getitem__(self, name):
        return self

    def insert_many(self, docs, ordered=True):
        for d in docs:
            bson.encode(d)
        self.docs += len(docs)
        return SimpleNamespace(inserted_ids=[d["_id"] for d in docs])

    def create_indexes(self, models):
        return []

    def replace_one(self, *a, **kw):
        return SimpleNamespace(matched_count=1)


class SinkClient:
    def __init__(self):
        self.db = BsonSink()

    def __getitem__(self, name):
        return self.db


def records(kind: str, n: int) -> list[dict]:
    seq = itertools.count()
    if kind == "tickers":
        return [ticker(INSTRUMENTS[i % 20], T0 + i, str(35000 + i % 7)) for i in range(n)]
    if kind == "trades":
        return [trade(next(seq), INSTRUMENTS[i % 20]) for i in range(n)]
    if kind == "books":
        return [book(INSTRUMENTS[i % 20], T0 + i, i) for i in range(n)]
    if kind == "orders":
        return [order(str(i), T0 + i, "filled") for i in range(n)]
    raise ValueError(kind)


def stored() -> float:
    """Records the in-process worker has stored so far (the ingest tasks' counter)."""
    return sum(
        s.value
        for m in ingest.RECORDS.collect()
        for s in m.samples
        if s.name.endswith("_total") and s.labels.get("outcome") == "stored"
    )


def run(url: str, kind: str, total: int, per_task: int) -> dict:
    from celery.contrib.testing.worker import start_worker

    broker = redis.Redis.from_url(url)
    broker.flushall()
    recs = records(kind, total)
    t0 = time.perf_counter()
    with app.producer_or_acquire() as producer:
        for i in range(0, total, per_task):
            app.send_task(
                INGEST_TASKS[kind],
                args=[batch(kind, recs[i : i + per_task])],
                queue=INGEST_QUEUE,
                producer=producer,
            )
    publish_s = time.perf_counter() - t0
    target = stored() + total
    t0 = time.perf_counter()
    with start_worker(
        app, pool="solo", perform_ping_check=False, queues=[INGEST_QUEUE], shutdown_timeout=30
    ):
        ready = time.perf_counter()
        while stored() < target:
            time.sleep(0.005)
        done = time.perf_counter()
    drain_s = done - ready
    return {
        "kind": kind,
        "per_task": per_task,
        "messages": total,
        "tasks": -(-total // per_task),
        "publish_s": publish_s,
        "drain_s": drain_s,
        "startup_s": ready - t0,
        "msgs_per_s": total / drain_s,
    }


def mongo_client_side(n: int = 20000) -> list[str]:
    out = []
    for kind in ("orders", "trades", "tickers", "books"):
        good, _ = documents.split_records(kind, records(kind, n))
        docs = documents.mongo_docs(kind, good)
        t0 = time.perf_counter()
        for d in docs:
            bson.encode(d)
        dt = time.perf_counter() - t0
        size = sum(len(bson.encode(d)) for d in docs[:100]) / 100
        out.append(f"  bson.encode {kind:8} {len(docs) / dt:>10,.0f} docs/s  ({size:.0f} B/doc)")
    import mongomock

    coll = mongomock.MongoClient()["okex"]["trades"]
    good, _ = documents.split_records("trades", records("trades", n))
    docs = documents.mongo_docs("trades", good)
    t0 = time.perf_counter()
    for i in range(0, len(docs), 500):
        coll.insert_many(docs[i : i + 500], ordered=False)
    out.append(
        f"  mongomock insert_many(500) trades {len(docs) / (time.perf_counter() - t0):,.0f} docs/s "
        "(not a reference)"
    )
    import os

    if os.environ.get("MONGODB_URI"):
        from tasks.writers.mongo_history import ensure_indexes, insert_history

        client = clients.make_mongo_client(os.environ["MONGODB_URI"], 5000)
        db = client[f"okex_bench_{int(time.time())}"]
        ensure_indexes(db)
        t0 = time.perf_counter()
        for i in range(0, len(docs), 500):
            insert_history(db["trades"], docs[i : i + 500])
        out.append(
            f"  real MongoDB insert_many(500) trades {len(docs) / (time.perf_counter() - t0):,.0f} docs/s"
        )
        t0 = time.perf_counter()
        for i in range(0, len(docs), 500):
            insert_history(db["trades"], docs[i : i + 500])  # all duplicates
        out.append(
            f"  real MongoDB, same batches again (all 11000) {len(docs) / (time.perf_counter() - t0):,.0f} docs/s"
        )
        client.drop_database(db.name)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--messages", type=int, default=100_000, help="messages per batched run")
    p.add_argument("--single", type=int, default=3_000, help="messages in the one-per-task run")
    p.add_argument("--batch", type=int, nargs="+", default=[100, 500])
    p.add_argument("--kinds", nargs="+", default=["tickers", "trades", "books", "orders"])
    a = p.parse_args(argv)
    import logging

    logging.disable(logging.WARNING)

    with RedisServer() as server:
        settings_mod.use(Settings(redis_url=server.url, books_sample_ms=1000))
        state = clients.make_redis_client(server.url.replace("/0", "/1"), 5)
        clients.install(mongo=SinkClient(), redis=state)
        app.conf.broker_url = server.url
        app.conf.worker_soft_shutdown_timeout = 0
        print("one worker process (solo pool), real redis-server, MongoDB = BSON-encoding sink")
        print(
            f"{'kind':8} {'msgs/task':>9} {'messages':>9} {'tasks':>6} {'drain s':>8} {'msgs/s':>10}"
        )
        for kind in a.kinds:
            rows = [run(server.url, kind, a.single, 1)]
            rows += [run(server.url, kind, a.messages, b) for b in a.batch]
            for r in rows:
                print(
                    f"{r['kind']:8} {r['per_task']:>9} {r['messages']:>9} {r['tasks']:>6} "
                    f"{r['drain_s']:>8.2f} {r['msgs_per_s']:>10,.0f}"
                )
        print("MongoDB, client side:")
        print("\n".join(mongo_client_side()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
