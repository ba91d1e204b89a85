"""The broker unreachable: the feeder says so (a retry line at least every 10 s with the backlog,
/healthz 503), stops within 10 s of SIGTERM whatever the broker does (nothing listening, or a
listener that accepts and never answers), and the records it could not publish are inside the
gap the next start records: watermarks only advance for what the broker accepted, so after the
restart and backfill the trades of that window are in the store."""

from __future__ import annotations

import logging
import socket
import threading
import time
import urllib.error
import urllib.request

import mongomock
import orjson
import pytest
import redis

from collector.feeder import Feeder
from core.settings import load
from localrun.redis_server import free_port
from tests.polling import wait_for

pytestmark = pytest.mark.integration

STOP_BOUND_S = 10.0


class HungBroker:
    """A TCP listener that accepts connections and never answers a byte."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.conns: list[socket.socket] = []
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)  # held open, never read, never answered

    def close(self) -> None:
        self._stop = True
        self.sock.close()
        for c in self.conns:
            c.close()


@pytest.fixture
def hung_broker():
    b = HungBroker()
    yield b
    b.close()


def health(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=3) as r:
            return r.status, orjson.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, orjson.loads(e.read())


@pytest.fixture
def start_feeder():
    feeders: list[Feeder] = []

    def make(sim, redis_url, **kw):
        kw.setdefault("instruments", "BTC-USDT")
        kw.setdefault("channels", "trades-all")
        kw.setdefault("health_port", free_port())
        kw.setdefault("feeder_id", "outage-feeder")
        f = Feeder(
            load(env={}, redis_url=redis_url, ws_url=sim.ws_url, rest_url=sim.rest_url, **kw)
        ).start()
        feeders.append(f)
        return f

    yield make
    for f in feeders:
        if not f.stopping.is_set():
            f.stop(5.0)


def retry_lines(caplog):
    return [
        r
        for r in caplog.records
        if r.name == "collector.publisher" and "still unavailable" in r.getMessage()
    ]


def timed_stop(f: Feeder) -> float:
    """What the CLI does at SIGTERM (cli.py: feeder.stop(9.0)), timed."""
    t0 = time.monotonic()
    f.stop(9.0)
    return time.monotonic() - t0


def test_nothing_listening_retry_lines_health_and_a_bounded_stop(sim_factory, start_feeder, caplog):
    caplog.set_level(logging.INFO)
    sim = sim_factory(clock_speed=5, instruments=("BTC-USDT",))
    f = start_feeder(sim, f"redis://127.0.0.1:{free_port()}/0")
    # /healthz says the broker is down, why, and how much waits
    _code, h = wait_for(
        lambda: (lambda c, b: (c, b) if c == 503 and f.outbox.backlog() else None)(
            *health(f.health.port)
        ),
        15,
        interval=0.1,
        what="503 with a backlog",
    )
    assert any(p.startswith("broker unavailable (") for p in h["problems"]), h["problems"]
    # a retry line at least every 10 s while it lasts, each with the backlog
    first = wait_for(
        lambda: [
            r
            for r in caplog.records
            if r.name == "collector.publisher" and "broker unavailable" in r.getMessage()
        ],
        15,
        what="the first error line",
    )[0]
    lines = wait_for(lambda: len(retry_lines(caplog)) >= 2 and retry_lines(caplog), 25)
    times = [first.created] + [r.created for r in lines]
    assert max(b - a for a, b in zip(times, times[1:])) <= 10.0, times
    assert all("backlog" in r.getMessage() for r in lines)
    assert int(lines[-1].getMessage().rsplit("backlog ", 1)[1].split()[0]) > 0
    # and SIGTERM's stop is bounded
    assert timed_stop(f) < STOP_BOUND_S


def test_a_hung_broker_still_stops_within_ten_seconds(
    sim_factory, start_feeder, hung_broker, caplog
):
    caplog.set_level(logging.INFO)
    sim = sim_factory(clock_speed=5, instruments=("BTC-USDT",))
    f = start_feeder(sim, hung_broker.url)
    wait_for(lambda: f.outbox.backlog() > 0 and hung_broker.conns, 15, what="records waiting")
    wait_for(lambda: health(f.health.port)[0] == 503, 15, interval=0.2, what="503")
    wait_for(lambda: retry_lines(caplog), 15, what="a retry line")
    assert timed_stop(f) < STOP_BOUND_S


def test_what_a_hung_broker_kept_is_inside_the_next_starts_gap_and_is_backfilled(
    sim_factory, start_feeder, hung_broker, redis_url
):
    from tests.test_backfill_integration import running_worker

    # Given okxsim at 20x, a real redis-server, a worker with backfill, and the feeder storing
    sim = sim_factory(clock_speed=20, rate=0.5, tick_ms=25, instruments=("BTC-USDT",))
    broker = redis.Redis.from_url(redis_url)
    state = redis.Redis.from_url(redis_url.replace("/0", "/1"))
    mongo = mongomock.MongoClient()
    db = mongo["okex"]
    wm_key = "wm:trades-all:BTC-USDT"
    with running_worker(redis_url, sim, mongo, state):
        f = start_feeder(sim, redis_url)
        wait_for(lambda: db.trades.count_documents({}) > 50, 20, what="live trades stored")
        # When the publisher's connection hangs (the ledger's Redis still answers: it keeps
        # writing watermarks and the heartbeat)
        pub = f.publisher
        pub.redis_url = hung_broker.url
        pub._reset()
        wait_for(lambda: not pub.broker_ok and f.outbox.backlog() > 100, 20, what="backlog")
        beats = broker.hget("feeder:outage-feeder", "heartbeat_ms")
        wait_for(
            lambda: broker.hget("feeder:outage-feeder", "heartbeat_ms") != beats, 10, what="beat"
        )
        # and the feeder is stopped (SIGTERM) while the broker still hangs
        assert timed_stop(f) < STOP_BOUND_S
        unpublished = sorted(int(it[4]) for it in f.outbox.queues["trades"])
        assert unpublished, "the hung broker kept records back"
        # Then the watermark in Redis is behind every record the broker never accepted
        mark = int(broker.hget(wm_key, "id"))
        assert mark < unpublished[0], (mark, unpublished[0])
        # and after the next start and backfill, every one of them is in the store
        start_feeder(sim, redis_url)
        wait_for(lambda: any(g == b"startup" for g in _gap_causes(broker)), 20, what="startup gap")
        wait_for(lambda: broker.zcard("gaps:open") == 0, 60, interval=0.2, what="gap repaired")
        stored = {int(d["tradeId"]) for d in db.trades.find({}, {"tradeId": 1})}
        missing = set(unpublished) - stored
        assert not missing, f"{len(missing)} of {len(unpublished)} unpublished trades not stored"


def _gap_causes(client: redis.Redis) -> list[bytes]:
    return [client.hget(b"gap:" + gid, "cause") for gid in client.zrange("gaps:all", 0, -1)]
