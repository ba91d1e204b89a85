"""Helpers for the feeder tests: read tasks straight from the broker's Redis list, poll with
deadlines, start okxsim and a feeder in-process."""

from __future__ import annotations

import base64

import orjson
import pytest
import redis

from okxsim.config import SimConfig
from okxsim.server import OkxSim
from tests.polling import wait_for  # noqa: F401  (re-exported for the feeder tests)


def decode_task(raw: bytes) -> tuple[str, list]:
    """A kombu message from a Redis list -> (task name, args)."""
    msg = orjson.loads(raw)
    body = msg["body"]
    if msg.get("properties", {}).get("body_encoding") == "base64":
        body = base64.b64decode(body)
    args, _kwargs, _embed = orjson.loads(body)
    return msg["headers"]["task"], args


def drain_tasks(client: redis.Redis, queue: str = "ingest") -> list[tuple[str, list]]:
    """Pop every task currently in `queue` (oldest first)."""
    out = []
    while True:
        raw = client.rpop(queue)
        if raw is None:
            return out
        out.append(decode_task(raw))


def batches_of(name: str, args: list) -> list[dict]:
    """The batch envelopes a task carries: one, or several in a mixed task (a small cycle)."""
    return list(args[0]) if name == "tasks.ingest.mixed" else [args[0]]


class TaskLog:
    """Accumulates published batches from the ingest list across polls."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.batches: list[dict] = []
        self.repairs: list[str] = []

    def poll(self) -> TaskLog:
        for name, args in drain_tasks(self.client):
            self.batches.extend(batches_of(name, args))
        for _name, args in drain_tasks(self.client, "backfill"):
            self.repairs.append(args[0])
        return self

    def records(self, kind: str) -> list[dict]:
        return [r for b in self.batches if b["kind"] == kind for r in b["records"]]


def gaps(client: redis.Redis) -> list[dict]:
    out = []
    for gid in client.zrange("gaps:all", 0, -1):
        h = client.hgetall(b"gap:" + gid)
        out.append({k.decode(): v.decode() for k, v in h.items()})
    return out


INSTS = ("BTC-USDT", "ETH-USDT")


@pytest.fixture
def sim_factory():
    """okxsim instances on free ports (two instruments unless told otherwise), stopped after."""
    sims = []

    def make(**kw):
        kw.setdefault("instruments", INSTS)
        sim = OkxSim(SimConfig(port=0, **kw)).start()
        sims.append(sim)
        return sim

    yield make
    for s in sims:
        s.stop()
