"""`python -m collector status`: what an operator sees, from a Redis written the way the feeder's
ledger and kombu write it (fakeredis), plus the pure assessment."""

from __future__ import annotations

import fakeredis
import orjson
import pytest

from collector import status
from core import keys

NOW_MS = 1_800_000_000_000


def _connections(state: str = "live", age: float | None = 0.5, error: str | None = None) -> str:
    return orjson.dumps(
        {
            "connections": [
                {
                    "name": "conn-public",
                    "endpoint": "public",
                    "state": state,
                    "reconnects": 2,
                    "last_close": "1006",
                    "frames": 10,
                    "subscriptions": {
                        "books5:BTC-USDT": {"status": "live", "error": error, "age_s": age},
                        "trades-all:BTC-USDT": {"status": "live", "error": None, "age_s": None},
                    },
                }
            ]
        }
    ).decode()


@pytest.fixture
def r(monkeypatch):
    server = fakeredis.FakeServer()
    client = fakeredis.FakeRedis(server=server, decode_responses=True)
    monkeypatch.setattr(
        status,
        "redis_client",
        lambda url: fakeredis.FakeRedis(server=server, decode_responses=True),
    )
    return client


def _feeder(r, fid="f1", beat_age_s=2.0, **conn):
    r.sadd(keys.FEEDERS, fid)
    r.hset(
        keys.feeder_key(fid),
        mapping={
            "heartbeat_ms": NOW_MS - int(beat_age_s * 1000),
            "pid": "4711",
            "connections": _connections(**conn),
        },
    )


def test_healthy_feeder_ages_are_brought_to_now_and_backlog_counted(r):
    _feeder(r, beat_age_s=2.0, age=0.5)
    r.rpush("ingest", "a", "b", "c")
    r.rpush("backfill", "x")
    r.hset("unacked", mapping={"t1": "m", "t2": "m"})
    st = status.gather("redis://unused", now_ms=NOW_MS)
    assert st["healthy"] and st["problems"] == []
    sub = st["feeders"][0]["connections"][0]["subscriptions"]
    assert sub["books5:BTC-USDT"]["age_s"] == 2.5  # 0.5 s at the heartbeat + 2 s since
    assert sub["trades-all:BTC-USDT"]["age_s"] is None  # never had a message
    assert st["queues"] == {"ingest": 3, "backfill": 1} and st["unacked"] == 2
    text = status.format_status(st)
    assert text.splitlines()[0] == "healthy"
    assert "feeder f1 (pid 4711): heartbeat 2.0 s ago" in text
    assert "books5:BTC-USDT" in text and "last message 2.5 s ago" in text and "never" in text
    assert "broker backlog: ingest 3, backfill 1" in text and "acknowledged: 2" in text


def test_open_gaps_are_listed_with_their_bounds(r):
    _feeder(r)
    r.zadd(keys.GAPS_OPEN, {"7": 1})
    r.hset(
        keys.gap_key("7"),
        mapping={
            "id": "7",
            "cause": "reconnect",
            "channel": "trades-all",
            "instId": "BTC-USDT",
            "start_ms": "1",
            "end_ms": "2",
            "start_id": "10",
            "end_id": "20",
            "status": "open",
        },
    )
    st = status.gather("redis://unused", now_ms=NOW_MS)
    assert st["open_gaps"] == 1 and st["healthy"]  # backfill's job, not a health problem
    assert "gap 7: reconnect trades-all BTC-USDT 1..2 ids 10..20 [open]" in status.format_status(st)


@pytest.mark.parametrize(
    "setup, expected",
    [
        (lambda r: None, "no feeder heartbeat"),
        (lambda r: _feeder(r, beat_age_s=40), "last heartbeat 40 s ago"),
        (lambda r: _feeder(r, state="connecting"), "conn-public is connecting"),
        (lambda r: _feeder(r, error="60018 channel does not exist"), "60018"),
        (
            lambda r: (_feeder(r), r.rpush("ingest", *range(status.BACKLOG_WARN + 1))),
            f"queue ingest: {status.BACKLOG_WARN + 1} tasks waiting",
        ),
        (lambda r: r.sadd(keys.FEEDERS, "gone"), "feeder gone: no heartbeat"),
    ],
)
def test_each_problem_makes_the_status_degraded(r, setup, expected):
    setup(r)
    st = status.gather("redis://unused", now_ms=NOW_MS)
    assert not st["healthy"]
    assert any(expected in p for p in st["problems"]), st["problems"]
    text = status.format_status(st)
    assert text.startswith("DEGRADED") and expected in text


def test_cli_json_and_unreachable_redis_without_leaking_the_password(r, monkeypatch, capsys):
    from collector.cli import main

    _feeder(r)
    monkeypatch.setenv("REDIS_URL", "redis://:hunter2-secret@127.0.0.1:6379/0")
    assert main(["status", "--json"]) == 0
    st = orjson.loads(capsys.readouterr().out)
    assert st["healthy"] is True and st["feeders"][0]["id"] == "f1"

    def refuse(url):
        import redis

        raise redis.ConnectionError(f"Error 111 connecting to {url}")

    monkeypatch.setattr(status, "redis_client", refuse)
    assert main(["status"]) == 1
    err = capsys.readouterr().err
    assert "cannot read Redis" in err and "hunter2-secret" not in err and "***" in err


def test_rediss_url_accepts_a_self_signed_certificate():
    c = status.redis_client("rediss://:pw@example.invalid:6380/0")
    kwargs = c.connection_pool.connection_kwargs
    assert kwargs["ssl_cert_reqs"] is None  # redis-py: None means CERT_NONE
    c2 = status.redis_client("rediss://:pw@example.invalid:6380/0?ssl_cert_reqs=required")
    assert c2.connection_pool.connection_kwargs["ssl_cert_reqs"] == "required"
