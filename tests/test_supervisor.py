"""The supervisor: restart policy (pure), the thread wrapper, fault injection, the metrics, and
each feeder thread surviving an injected exception (no sockets: the threads run on fakes)."""

from __future__ import annotations

import logging
import random
import threading

import fakeredis
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from collector.health import Metrics
from collector.ledger import Ledger
from collector.outbox import Outbox
from collector.publisher import Publisher
from collector.snapshot import FeederSnapshot
from collector.supervisor import RestartPolicy, Supervisor
from okx.backoff import Backoff
from tests.polling import wait_for


def fast_policy() -> RestartPolicy:
    return RestartPolicy(backoff=Backoff(initial=0.001, factor=2.0, cap=0.005))


class Boom(Exception):
    pass


# ----- the policy --------------------------------------------------------------------------------


def test_policy_backs_off_and_reports_a_loop_past_n_crashes_in_the_window():
    p = RestartPolicy(backoff=Backoff(initial=1.0, factor=2.0, cap=8.0, floor=1.0), loop_restarts=3)
    rng = random.Random(1)
    # the delays double up to the cap (floor 1.0: no jitter)
    assert [p.on_crash(float(t), 0.1, rng) for t in range(5)] == [1.0, 2.0, 4.0, 8.0, 8.0]
    assert p.looping(4.0)  # 5 crashes in 60 s > 3
    # a minute later the old crashes have expired: no longer a loop
    assert not p.looping(64.5)


def test_policy_starts_the_backoff_afresh_after_a_long_healthy_run():
    p = RestartPolicy(backoff=Backoff(initial=1.0, factor=2.0, cap=8.0, floor=1.0))
    rng = random.Random(1)
    p.on_crash(0.0, 0.1, rng)
    p.on_crash(1.0, 0.1, rng)
    assert p.on_crash(100.0, 99.0, rng) == 1.0  # ran 99 s before this crash


# ----- the wrapper -------------------------------------------------------------------------------


def test_a_crashing_body_is_restarted_logged_once_per_type_and_counted(caplog):
    stop = threading.Event()
    sup = Supervisor(stop, policy=fast_policy)
    calls = []
    crashed = []

    def body():
        calls.append(1)
        if len(calls) <= 3:
            raise Boom(f"crash {len(calls)}")

    with caplog.at_level(logging.DEBUG, logger="collector.supervisor"):
        sup.run("worker", body, on_crash=crashed.append)
    # three crashes, three restarts, then the body returned normally
    assert len(calls) == 4 and [str(e) for e in crashed] == ["crash 1", "crash 2", "crash 3"]
    [t] = sup.snapshot()
    assert t.name == "worker" and t.restarts == 3 and not t.looping
    assert t.last_error == "Boom: crash 3"
    tracebacks = [r for r in caplog.records if r.levelno == logging.ERROR and r.exc_info]
    assert len(tracebacks) == 1  # rate-limited: one traceback for the repeating type


def test_a_crash_loop_is_reported(caplog):
    stop = threading.Event()
    sup = Supervisor(stop, policy=fast_policy)
    n = []

    def body():
        n.append(1)
        if len(n) <= 7:
            raise Boom("again")

    with caplog.at_level(logging.ERROR, logger="collector.supervisor"):
        sup.run("looper", body)
    [t] = sup.snapshot()
    assert t.looping and t.restarts == 7
    assert any("restarting in a loop" in r.getMessage() for r in caplog.records)


def test_stopping_ends_the_restart_wait():
    stop = threading.Event()
    sup = Supervisor(stop, policy=lambda: RestartPolicy(backoff=Backoff(initial=60, cap=60)))

    def body():
        stop.set()
        raise Boom("at shutdown")

    sup.run("once", body)  # returns at once: no 60 s wait, no restart
    [t] = sup.snapshot()
    assert t.restarts == 0 and not t.up


def test_a_clean_up_that_raises_does_not_end_it_either():
    stop = threading.Event()
    sup = Supervisor(stop, policy=fast_policy)
    n = []

    def body():
        n.append(1)
        if len(n) == 1:
            raise Boom("first")

    def bad_cleanup(exc):
        raise RuntimeError("clean-up bug")

    sup.run("t", body, on_crash=bad_cleanup)
    assert len(n) == 2


def test_injected_fault_crashes_a_running_thread_at_its_checkpoint_and_it_restarts():
    stop = threading.Event()
    sup = Supervisor(stop, policy=fast_policy)
    checkpoint = sup.handle("spinner")
    runs = []

    def body():
        runs.append(1)
        while not stop.wait(0.005):
            checkpoint()

    t = threading.Thread(target=sup.run, args=("spinner", body), daemon=True)
    t.start()
    try:
        wait_for(lambda: runs, 5, what="thread running")
        sup.inject("spinner", Boom("injected"))
        [snap] = wait_for(
            lambda: [s for s in sup.snapshot() if s.restarts == 1 and s.up], 5, what="restart"
        )
        assert snap.last_error == "Boom: injected" and len(runs) == 2
    finally:
        stop.set()
        t.join(5)
    assert not t.is_alive()


def test_a_thread_that_ended_without_returning_is_reported_down():
    stop = threading.Event()
    sup = Supervisor(stop, policy=fast_policy)

    def broken_supervision():
        # registered and running, then the thread dies outside the supervisor's loop
        sup._unit("orphan").up = True

    t = threading.Thread(target=broken_supervision)
    t.start()
    t.join(5)
    [s] = sup.snapshot()
    assert s.name == "orphan" and not s.up


def test_thread_metrics_come_from_the_snapshot():
    stop = threading.Event()
    sup = Supervisor(stop, policy=fast_policy)
    n = []

    def body():
        n.append(1)
        if len(n) < 3:
            raise Boom("x")

    sup.run("publisher", body)
    snap = FeederSnapshot(feeder_id="f", uptime_s=1.0, threads=sup.snapshot())
    text = Metrics(lambda: snap).render().decode()
    m = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }
    assert m[("feeder_thread_restarts_total", (("thread", "publisher"),))] == 2
    assert m[("feeder_thread_up", (("thread", "publisher"),))] == 0.0  # it returned: ended
    assert m[("feeder_thread_looping", (("thread", "publisher"),))] == 0.0


# ----- the feeder's threads survive an injected exception ------------------------------------------


def test_the_ledger_survives_an_injected_exception_and_keeps_its_gaps(monkeypatch):
    r = fakeredis.FakeRedis()
    stop = threading.Event()
    sup = Supervisor(stop, policy=fast_policy)
    ledger = Ledger(
        "redis://unused:1/0",
        "f1",
        [("trades", "BTC-USDT")],
        pull=lambda led: None,
        on_gap_id=lambda gid: None,
        status=lambda: {"connections": []},
        interval=0.01,
        supervisor=sup,
    )
    ledger.client = r
    ledger.start()
    try:
        wait_for(lambda: r.exists("feeder:f1"), 5, what="first heartbeat")
        sup.inject("ledger", Boom("ledger bug"))
        wait_for(
            lambda: [t for t in sup.snapshot() if t.name == "ledger" and t.restarts == 1 and t.up],
            5,
            what="ledger restarted",
        )
        assert ledger.is_alive()
    finally:
        ledger.stop(5)
    assert not ledger.is_alive() and not r.exists("feeder:f1")  # the final cycle still ran


@pytest.mark.integration
def test_the_publisher_survives_an_injected_exception_and_publishes_after_it(redis_url):
    stop = threading.Event()
    sup = Supervisor(stop, policy=fast_policy)
    outbox = Outbox()
    pub = Publisher(outbox, redis_url, "t", supervisor=sup)
    pub.start()
    try:
        sup.inject("publisher", Boom("publisher bug"))
        wait_for(lambda: [t for t in sup.snapshot() if t.restarts == 1 and t.up], 5, what="restart")
        outbox.put("trades", "trades", "BTC-USDT", 1, "7", {"tradeId": "7"}, 0.0)
        wait_for(lambda: pub.published == 1, 5, what="published after the restart")
        assert redis.Redis.from_url(redis_url).llen("ingest") == 1
        assert pub.marks[("trades", "BTC-USDT")][:2] == (1, "7")
    finally:
        pub.flush(2)
