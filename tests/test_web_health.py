"""GET /api/v1/health: one verdict from the feeder's heartbeat (its own problems, as /healthz)
and the workers' ping; anything dead, stalled or restarting is not ok."""

from __future__ import annotations

import time

import fakeredis
import mongomock
import orjson
import pytest
from fastapi.testclient import TestClient

from core import keys
from tests.web_fixtures import app_for
from web.health import WorkerProbe, WorkersView, connections, verdict

NOW = 1_700_000_000_000


def heartbeat(r, fid="feeder-a", problems=(), state="live", age_s=0.4, at_ms=None, threads=()):
    status = {
        "connections": [
            {
                "name": "public",
                "endpoint": "public",
                "state": state,
                "reconnects": 2,
                "subscriptions": {
                    "trades:BTC-USDT": {"status": "acked", "error": None, "age_s": age_s},
                    "tickers:ETH-USDT": {"status": "acked", "error": None, "age_s": None},
                },
            }
        ],
        "problems": list(problems),
        "threads": list(threads),
    }
    r.hset(
        keys.feeder_key(fid),
        mapping={
            "heartbeat_ms": str(at_ms if at_ms is not None else int(time.time() * 1000)),
            "pid": "4242",
            "started_ms": str(NOW),
            "connections": orjson.dumps(status).decode(),
        },
    )
    r.sadd(keys.FEEDERS, fid)


class FixedProbe:
    def __init__(self, view):
        self.view = view

    def start(self):
        pass

    def stop(self):
        pass


class FakeFlower:
    def __init__(self, state="up", restarts=0):
        self.state, self.restarts = state, restarts

    def status(self):
        return {"state": self.state, "restarts": self.restarts, "pid": 1, "last_exit": None}

    async def start(self):
        pass

    async def stop(self):
        pass


ONLINE = WorkersView(online=("celery@w1",), checked_ms=NOW, mongo_ok=True)


@pytest.fixture
def r():
    return fakeredis.FakeRedis(decode_responses=True)


def health(r, view=ONLINE, flower=None):
    app = app_for(r, mongomock.MongoClient()["okex"], worker_probe=FixedProbe(view))
    app.state.flower = flower
    with TestClient(app) as c:
        resp = c.get("/api/v1/health")
    return resp.status_code, resp.json()


def test_all_parts_up_is_ok_200_with_the_contract_shape(r):
    heartbeat(r)
    code, body = health(r, flower=FakeFlower())
    assert (code, body["verdict"], body["reasons"]) == (200, "ok", [])
    conn = body["feeder"]["connections"][0]
    assert conn["name"] == "public" and conn["state"] == "live"
    subs = {(s["channel"], s["instId"]): s["age_ms"] for s in conn["subscriptions"]}
    assert subs[("trades", "BTC-USDT")] >= 400 and subs[("tickers", "ETH-USDT")] is None
    assert body["workers"]["online"] == ["celery@w1"] and body["workers"]["mongodb"] == "ok"
    assert body["workers"]["queues"] == {"ingest": 0, "backfill": 0}


@pytest.mark.parametrize(
    "setup, view, flower, verdict_word, words",
    [
        (lambda r: None, ONLINE, None, "down", "no live feeder"),
        (lambda r: heartbeat(r, at_ms=NOW), ONLINE, None, "degraded", "last heartbeat"),
        (
            lambda r: heartbeat(r, problems=["thread reader-public is dead"]),
            ONLINE,
            None,
            "degraded",
            "reader-public is dead",
        ),
        (
            lambda r: heartbeat(r, problems=["public is reconnecting (7 s)"], state="connecting"),
            ONLINE,
            None,
            "degraded",
            "reconnecting",
        ),
        (
            lambda r: heartbeat(r),
            WorkersView(checked_ms=NOW, mongo_ok=True),
            None,
            "down",
            "no Celery worker",
        ),
        (
            lambda r: heartbeat(r),
            WorkersView(checked_ms=NOW, error="OperationalError"),
            None,
            "down",
            "ping failed",
        ),
        (lambda r: heartbeat(r), WorkersView(), None, "degraded", "not checked yet"),
        (
            lambda r: heartbeat(r),
            WorkersView(online=("w",), checked_ms=NOW, mongo_ok=False, mongo_error="Timeout"),
            None,
            "degraded",
            "MongoDB unreachable",
        ),
        (lambda r: heartbeat(r), ONLINE, FakeFlower("restarting", 1), "degraded", "flower is"),
        (lambda r: heartbeat(r), ONLINE, FakeFlower("down", 6), "degraded", "flower is down"),
    ],
)
def test_anything_dead_stalled_or_restarting_is_not_ok(r, setup, view, flower, verdict_word, words):
    setup(r)
    code, body = health(r, view, flower)
    assert code == 503 and body["verdict"] == verdict_word
    assert any(words in reason for reason in body["reasons"]), body["reasons"]


def test_a_queue_backlog_degrades(r):
    heartbeat(r)
    r.rpush("ingest", *["x"] * 10_001)
    code, body = health(r)
    assert body["verdict"] == "degraded" and any("ingest" in x for x in body["reasons"])


def test_unreachable_ledger_redis_is_down():
    class Dead(fakeredis.FakeRedis):
        def smembers(self, name):
            import redis

            raise redis.ConnectionError("Error 111 connecting to redis://:hunter2@x")

    code, body = health(Dead(decode_responses=True))
    assert body["verdict"] == "down" and "hunter2" not in orjson.dumps(body).decode()
    assert any("ledger Redis unreachable: ConnectionError" in x for x in body["reasons"])


def test_verdict_and_connections_are_pure():
    assert verdict({"feeders": [{"alive": True}], "problems": []}, ONLINE, None) == ("ok", [])
    assert verdict(None, ONLINE, None, "TimeoutError")[0] == "down"
    assert connections([{"id": "f", "connections": [{"name": "p", "subscriptions": {}}]}]) == [
        {"feeder": "f", "name": "p", "state": "", "reconnects": 0, "subscriptions": []}
    ]


def test_the_probe_reports_failures_instead_of_raising():
    def ping():
        raise OSError("broker down")

    def mongo_ping():
        raise TimeoutError

    view = WorkerProbe(ping=ping, mongo_ping=mongo_ping).check_once()
    assert view.error == "OSError" and view.mongo_ok is False and view.checked_ms
    ok = WorkerProbe(ping=lambda: ["b", "a"], mongo_ping=lambda: None).check_once()
    assert ok.online == ("a", "b") and ok.mongo_ok is True and not ok.error
