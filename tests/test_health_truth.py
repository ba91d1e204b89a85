"""Health that tells the truth: each condition that makes /healthz 503 and `collector status`
DEGRADED, on snapshots built by hand; a dead connection thread listed, not dropped; and end to
end, a reader killed by an injected exception against okxsim with a real redis-server, a worker
and backfill: 503, restarted, its window a gap that is backfilled, 200 again."""

from __future__ import annotations

import urllib.error
import urllib.request

import fakeredis
import mongomock
import orjson
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from collector import status as status_mod
from collector.driver import Driver
from collector.feeder import Feeder
from collector.health import healthz
from collector.ledger import Ledger
from collector.snapshot import ConnectionSnapshot, FeederSnapshot, RateWindow
from collector.supervisor import ThreadSnapshot
from core.settings import load
from okx.clock import now_ms
from tests.feeder_fixtures import gaps
from tests.polling import wait_for


def conn(name="conn-public", phase="live", down_s=None, stale=(), retired=False):
    return ConnectionSnapshot(
        name=name,
        endpoint="public",
        phase=phase,
        retired=retired,
        frames=10,
        state={"endpoint": "public", "state": phase, "reconnects": 0, "subscriptions": {}},
        down_s=down_s,
        stale=stale,
    )


def thread(name="publisher", up=True, looping=False, restarts=0, crash_age=None, err=None):
    return ThreadSnapshot(name, up, restarts, looping, err, crash_age)


def snap(*conns, **kw):
    kw.setdefault("threads", (thread(),))
    return FeederSnapshot(feeder_id="f1", uptime_s=60.0, connections=conns, **kw)


# ----- each condition, on a snapshot -------------------------------------------------------------


def test_everything_fine_is_ok():
    assert healthz(snap(conn()))["status"] == "ok"


def test_a_reconnect_shorter_than_the_setting_is_no_problem_a_longer_one_is():
    assert snap(conn(phase="subscribing", down_s=4.9), unhealthy_after_s=5.0).problems() == []
    assert snap(conn(phase="down", down_s=6.0), unhealthy_after_s=5.0).problems() == [
        "conn-public is down for 6.0 s"
    ]


def test_a_dead_connection_is_a_problem_at_once():
    h = healthz(snap(conn(phase="dead", down_s=0.1)))
    assert h["status"] == "degraded" and h["problems"] == ["conn-public is dead (its thread ended)"]
    assert [c["name"] for c in h["connections"]] == ["conn-public"]  # listed, not dropped


def test_a_silent_subscription_is_a_problem():
    p = snap(conn(stale=("trades:BTC-USDT (47 s)",))).problems()
    assert p == ["conn-public: no data from trades:BTC-USDT (47 s)"]


@pytest.mark.parametrize(
    "t, expected",
    [
        (thread(up=False, err="Boom: x"), "thread publisher is down (last: Boom: x)"),
        (thread(looping=True, restarts=9, err="Boom: x"), "restarting in a loop (9 restarts"),
        (thread(restarts=1, crash_age=1.5, err="Boom: x"), "crashed 1.5 s ago and was restarted"),
    ],
)
def test_thread_problems(t, expected):
    [p] = snap(conn(), threads=(t,)).problems()
    assert expected in p


def test_an_old_crash_is_no_longer_a_problem():
    assert snap(conn(), threads=(thread(restarts=1, crash_age=30.0),)).problems() == []


def test_broker_unreachable_says_why_and_how_much_waits():
    p = snap(
        conn(), broker_ok=False, broker_error="ConnectionError: refused", backlog_by_kind={"t": 7}
    ).problems()
    assert p == ["broker unavailable (ConnectionError: refused); 7 records waiting"]


def test_parse_errors_past_the_rate_are_a_problem():
    assert snap(conn(), parse_errors_last_min=60, parse_errors_per_min_max=60).problems() == []
    [p] = snap(conn(), parse_errors_last_min=61, parse_errors_per_min_max=60).problems()
    assert (
        p == "61 parse errors in the last minute of 0 frames (more than 60 and 50% of the frames)"
    )


def test_parse_errors_in_a_minority_of_frames_are_no_problem():
    # A feed salted with bad frames (okxsim's hostile fault: one extra bad copy per three good
    # frames) is healthy while most frames are good; a feed whose format broke is not.
    salted = snap(conn(), parse_errors_last_min=3000, frames_last_min=12_000)
    assert salted.problems() == []
    broken = snap(conn(), parse_errors_last_min=9000, frames_last_min=12_000)
    [p] = broken.problems()
    assert p.startswith("9000 parse errors in the last minute of 12000 frames")
    assert (
        snap(
            conn(), parse_errors_last_min=3000, frames_last_min=12_000, parse_error_share_max=0.2
        ).problems()
        != []
    )


def test_rate_window_counts_the_growth_over_the_last_minute():
    w = RateWindow(60.0)
    assert w.add(0.0, 0) == 0
    assert w.add(10.0, 50) == 50
    assert w.add(50.0, 80) == 80
    # at 75 s the sample at 10 s is the window's start: growth since then
    assert w.add(75.0, 90) == 40
    assert w.add(200.0, 90) == 0  # quiet for a long time


def test_metrics_carry_the_parse_rate():
    from collector.health import Metrics

    text = Metrics(lambda: snap(conn(), parse_errors_last_min=12)).render().decode()
    values = {s.name: s.value for fam in text_string_to_metric_families(text) for s in fam.samples}
    assert values["feeder_parse_errors_last_minute"] == 12


# ----- a connection thread that ended is listed as dead ------------------------------------------


def test_a_dead_reader_thread_stays_in_the_feeder_snapshot_as_dead(monkeypatch):
    f = Feeder(load(env={}, instruments="BTC-USDT", channels="trades", health_port=0))
    d = Driver(f, "public", [{"channel": "trades", "instId": "BTC-USDT"}], False, "conn-public")
    # the supervisor itself broken: the thread's run() ends at once, unretired
    monkeypatch.setattr(f.supervisor, "run", lambda *a, **kw: None)
    f.drivers.append(d)
    d.start()
    d.join(5)
    s = f.snapshot()
    assert [c.name for c in s.connections] == ["conn-public"]
    assert s.connections[0].phase == "dead" and s.connections[0].state["state"] == "dead"
    assert "conn-public is dead (its thread ended)" in s.problems()


# ----- `collector status` reads the same verdict from the heartbeat -----------------------------


def test_collector_status_is_degraded_with_the_feeders_reasons():
    server = fakeredis.FakeServer()
    degraded = snap(conn(phase="down", down_s=9.0), threads=(thread(up=False, err="Boom: x"),))
    ledger = Ledger(
        "redis://unused:1/0",
        "f1",
        [],
        pull=lambda led: None,
        on_gap_id=lambda gid: None,
        status=degraded.status,
    )
    ledger.client = fakeredis.FakeRedis(server=server)
    ledger.cycle()
    reader = fakeredis.FakeRedis(server=server, decode_responses=True)
    st = status_mod._gather(reader, 20, now_ms())
    assert not st["healthy"]
    assert "feeder f1: conn-public is down for 9.0 s" in st["problems"]
    assert "feeder f1: thread publisher is down (last: Boom: x)" in st["problems"]
    text = status_mod.format_status(st)
    assert text.startswith("DEGRADED") and "thread publisher: DOWN" in text


def test_collector_status_is_healthy_when_the_feeder_says_so():
    server = fakeredis.FakeServer()
    ledger = Ledger(
        "redis://unused:1/0",
        "f1",
        [],
        pull=lambda led: None,
        on_gap_id=lambda gid: None,
        status=snap(conn()).status,
    )
    ledger.client = fakeredis.FakeRedis(server=server)
    ledger.cycle()
    st = status_mod._gather(fakeredis.FakeRedis(server=server, decode_responses=True), 20, now_ms())
    assert st["healthy"], st["problems"]


# ----- end to end: a reader killed by an injected exception ----------------------------------------


def health(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=3) as r:
            return r.status, orjson.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, orjson.loads(e.read())


def metric(port, name, labels):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3) as r:
        text = r.read().decode()
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name and s.labels == labels:
                return s.value
    return None


@pytest.mark.integration
def test_a_killed_reader_is_503_restarted_and_its_window_backfilled(
    sim_factory, feeder_factory, redis_url
):
    from tests.test_backfill_integration import running_worker, sim_now

    # Given okxsim at 20x, a real redis-server, a worker with backfill, and the feeder on
    # trades-all for one instrument
    sim = sim_factory(clock_speed=20, rate=0.5, tick_ms=25, instruments=("BTC-USDT",))
    broker = redis.Redis.from_url(redis_url)
    state = redis.Redis.from_url(redis_url.replace("/0", "/1"))
    mongo = mongomock.MongoClient()
    db = mongo["okex"]
    with running_worker(redis_url, sim, mongo, state):
        f = feeder_factory(sim, redis_url, instruments="BTC-USDT", channels="trades-all")
        port = f.health.port
        wait_for(lambda: db.trades.count_documents({}) > 50, 20, what="live trades stored")
        wait_for(lambda: health(port)[0] == 200, 20, what="healthy")
        [d] = f.drivers
        # When the reader thread is killed by an exception (a bug, a frame nobody expected)
        crashed_at = sim_now(sim)
        f.supervisor.inject(d.name, RuntimeError("injected into the reader"))
        # Then /healthz says so within 5 s
        code, h = wait_for(
            lambda: (lambda c, b: (c, b) if c == 503 else None)(*health(port)),
            5,
            interval=0.1,
            what="503",
        )
        assert any(d.name in p and "injected into the reader" in p for p in h["problems"]), h
        # the thread is restarted (same thread, one restart counted) and reconnects
        wait_for(lambda: d.state.phase == "live", 15, what="reconnected")
        assert d.is_alive()
        assert metric(port, "feeder_thread_restarts_total", {"thread": d.name}) == 1.0
        # the window is a reconnect gap, and backfill repairs it
        window = wait_for(
            lambda: [
                g
                for g in gaps(broker)
                if g["cause"] == "reconnect" and int(g["end_ms"]) >= crashed_at - 60_000
            ],
            20,
            what="reconnect gap",
        )
        wait_for(lambda: broker.zcard("gaps:open") == 0, 60, interval=0.2, what="gap repaired")
        (g,) = window
        lo, hi = int(g["start_id"]), int(g["end_id"])
        assert hi - lo > 1, g  # the crash really lost trades...
        stored = {int(x["tradeId"]) for x in db.trades.find({}, {"tradeId": 1})}
        assert set(range(lo + 1, hi)) <= stored  # ...and every one of them is in the store
        # and /healthz is 200 again
        wait_for(lambda: health(port)[0] == 200, 15, interval=0.2, what="200 again")


@pytest.fixture
def feeder_factory():
    from localrun.redis_server import free_port
    from tests.test_backfill_integration import CREDS_ENV

    feeders: list[Feeder] = []

    def make(sim, redis_url, **kw):
        kw.setdefault("ping_after_s", 2.0)
        kw.setdefault("health_port", free_port())
        kw.setdefault("feeder_id", "truth-feeder")
        f = Feeder(
            load(env=CREDS_ENV, redis_url=redis_url, ws_url=sim.ws_url, rest_url=sim.rest_url, **kw)
        ).start()
        feeders.append(f)
        return f

    yield make
    for f in feeders:
        if not f.stopping.is_set():
            f.stop(5.0)


@pytest.mark.integration
def test_a_frame_that_makes_the_pipeline_raise_costs_a_reconnect_not_the_thread(
    sim_factory, redis_url
):
    # Given a pipeline with a bug: the 30th frame raises, as int("12a") did in the pipeline
    sim = sim_factory(clock_speed=5, instruments=("BTC-USDT",))
    from localrun.redis_server import free_port

    f = Feeder(
        load(
            env={},
            redis_url=redis_url,
            ws_url=sim.ws_url,
            rest_url=sim.rest_url,
            instruments="BTC-USDT",
            channels="trades",
            health_port=free_port(),
            feeder_id="hostile",
        )
    )
    real_feed, calls = f.pipeline.feed, []

    def feed(*args, **kw):
        calls.append(1)
        if len(calls) == 30:
            raise ValueError("invalid literal for int() with base 10: '12a'")
        return real_feed(*args, **kw)

    f.pipeline.feed = feed  # type: ignore[method-assign]
    f.start()
    try:
        [d] = f.drivers
        wait_for(lambda: len(calls) > 30 and d.state.phase == "live", 20, what="past the frame")
        before = f.publisher.published
        # Then the same thread carries on: restarted once, reconnected, publishing again; the
        # feeder's lock and the outbox's burst hold were released by the crash
        wait_for(lambda: f.publisher.published > before + 5, 20, what="publishing again")
        [t] = [t for t in f.snapshot().threads if t.name == d.name]
        assert d.is_alive() and t.restarts == 1 and "12a" in (t.last_error or "")
        assert f.lock.acquire(timeout=1)
        f.lock.release()
        assert not f.outbox._holders
        assert d.state.reconnects >= 1
    finally:
        f.stop(5.0)
