"""The real workers (`tasks`), with MongoDB replaced by a sink that BSON-encodes every document as
pymongo would and keeps only the trade ids (for the "nothing lost" check).

    BENCH_SINK_DIR=DIR celery -A bench.sink_worker worker -Q ingest ...

Used by `bench/e2e.py --mongo sink` to measure the collector without the MongoDB stand-in's own
cost (mongomock in Python behind one lock, far slower than a mongod). Everything else (tasks,
writers, Redis state, Celery settings) is the production code, plus bench/write_stamp.py (Redis's
own time in each state hash, for the latency figure). Each worker process writes the trade ids
it stored to DIR/trades-<pid>.txt as it goes.
"""

from __future__ import annotations

import os
from types import SimpleNamespace
from typing import Any

import bson

from bench import write_stamp
from tasks import (
    app,  # noqa: F401  (the production app and its tasks: `celery -A bench.sink_worker`)
    clients,
)

write_stamp.install()


class _Sink:
    """A database: hands out collections that encode, count and log trade ids."""

    def __init__(self) -> None:
        self.docs = 0
        self._log: Any = None
        self._pid = 0

    def __getitem__(self, name: str) -> _Collection:
        return _Collection(self, name)

    def command(self, *args: Any, **kwargs: Any) -> dict:
        """The history drain's probe (`ping`): a sink always answers."""
        return {"ok": 1.0}

    def log_trades(self, docs: list[dict]) -> None:
        """Append "instId tradeId" lines to DIR/trades-<pid>.txt, one write per batch (cheap next
        to the batch itself, and nothing is lost however the worker process ends)."""
        out = os.environ.get("BENCH_SINK_DIR")
        if not out:
            return
        if self._pid != os.getpid():  # first use, or a forked pool child
            self._pid = os.getpid()
            self._log = open(os.path.join(out, f"trades-{self._pid}.txt"), "ab", buffering=0)
        self._log.write("".join(f"{d['instId']} {d['tradeId']}\n" for d in docs).encode())


class _Collection:
    def __init__(self, sink: _Sink, name: str) -> None:
        self.sink, self.name = sink, name

    def insert_many(self, docs: list[dict], ordered: bool = True) -> Any:
        for d in docs:
            bson.encode(d)
        self.sink.docs += len(docs)
        if self.name == "trades":
            self.sink.log_trades(docs)
        return SimpleNamespace(inserted_ids=[d["_id"] for d in docs])

    def insert_one(self, doc: dict) -> Any:
        return SimpleNamespace(inserted_id=self.insert_many([doc]).inserted_ids[0])

    def replace_one(self, *a: Any, **kw: Any) -> Any:
        return SimpleNamespace(matched_count=1, modified_count=1, upserted_id=None)

    def create_indexes(self, models: Any, **kw: Any) -> list:
        return []

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"the bench sink has no {name}")


class _SinkClient:
    def __init__(self) -> None:
        self.db = _Sink()

    def __getitem__(self, name: str) -> _Sink:
        return self.db

    def close(self) -> None:
        pass


SINK = _SinkClient()
clients.install(mongo=SINK)  # before the pool forks: every child gets its own copy
