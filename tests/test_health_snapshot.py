"""/healthz and /metrics rendered from a FeederSnapshot built by hand: no feeder, no sockets."""

from __future__ import annotations

import urllib.error
import urllib.request

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from collector.health import HealthServer, Metrics, healthz
from collector.snapshot import ConnectionSnapshot, FeederSnapshot, SubscriptionAge


def conn(
    name: str = "conn-public",
    phase: str = "live",
    retired: bool = False,
    frames: int = 120,
    ages: tuple[SubscriptionAge, ...] = (),
) -> ConnectionSnapshot:
    subs = {
        f"{a.channel}:{a.inst}": {"status": "subscribed", "error": None, "age_s": round(a.age_s, 3)}
        for a in ages
    }
    state = {
        "endpoint": "public",
        "state": phase,
        "conn_id": "pu1",
        "reconnects": 2,
        "last_close": None,
        "subscriptions": subs,
    }
    return ConnectionSnapshot(
        name=name,
        endpoint="public",
        phase=phase,
        retired=retired,
        frames=frames,
        ages=ages,
        state=state,
    )


def snapshot(*conns: ConnectionSnapshot, **kw: object) -> FeederSnapshot:
    fields: dict = dict(
        feeder_id="f1",
        uptime_s=12.34,
        connections=conns,
        frames=500,
        messages_by_channel={"trades": 300, "books": 150},
        parse_errors={"bad json": 3},
        unknown_frames={"no arg": 1},
        book_resyncs={"seq_gap": 2},
        duplicate_trades=4,
        reconnects=5,
        backlog_by_kind={"trades": 7, "books": 2},
        dropped_records=9,
        published_records=480,
        broker_queue_depth=11,
        publish_lingers=6,
        gaps_written=8,
    )
    fields.update(kw)
    return FeederSnapshot(**fields)


def samples(snap: FeederSnapshot) -> dict[tuple[str, tuple], float]:
    text = Metrics(lambda: snap).render().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


AGES = (SubscriptionAge("trades", "BTC-USDT", 0.25), SubscriptionAge("books", "ETH-USDT", 1.5))


def test_all_live_is_ok_with_the_data_block():
    # Given one live connection with two fresh subscriptions, a broker and a ledger that answer
    h = healthz(snapshot(conn(ages=AGES)))
    # Then the verdict is ok, and the data block and counters come from the snapshot
    assert h["status"] == "ok" and h["problems"] == []
    assert h["feeder"] == "f1" and h["uptime_s"] == 12.3 and h["backlog"] == 9
    assert h["data"] == {
        "last_message_age_s": 0.25,
        "subscriptions_with_data": 2,
        "frames": 120,
        "published_records": 480,
    }
    [c] = h["connections"]
    assert c["name"] == "conn-public" and c["state"] == "live" and c["frames"] == 120
    assert c["reconnects"] == 2 and set(c["subscriptions"]) == {"trades:BTC-USDT", "books:ETH-USDT"}


@pytest.mark.parametrize(
    "kw, problem",
    [
        ({}, "conn-public is connecting"),
        ({"broker_ok": False}, "broker unavailable"),
        ({"ledger_redis_ok": False}, "redis unavailable for the ledger"),
    ],
)
def test_any_dead_part_gives_the_degraded_verdict(kw, problem):
    phase = "connecting" if not kw else "live"
    h = healthz(snapshot(conn(phase=phase), **kw))
    assert h["status"] == "degraded" and h["problems"] == [problem]


def test_a_retired_connection_is_listed_but_is_no_problem():
    # a 64008 replacement is live; the old connection is on its way out
    h = healthz(snapshot(conn(), conn("conn-public-7", phase="closing", retired=True)))
    assert h["status"] == "ok" and len(h["connections"]) == 2


def test_no_data_yet():
    h = healthz(snapshot(conn(phase="subscribing", frames=0)))
    assert h["data"]["last_message_age_s"] is None and h["data"]["subscriptions_with_data"] == 0


def test_every_metric_is_the_snapshot_field():
    snap = snapshot(conn(ages=AGES), conn("conn-business", phase="connecting"))
    m = samples(snap)
    assert m[("feeder_frames_total", ())] == snap.frames == 500
    assert m[("feeder_messages_total", (("channel", "trades"),))] == 300
    assert m[("feeder_bad_frames_total", (("kind", "parse_error"), ("reason", "bad json")))] == 3
    assert m[("feeder_bad_frames_total", (("kind", "unknown"), ("reason", "no arg")))] == 1
    assert m[("feeder_book_resyncs_total", (("cause", "seq_gap"),))] == 2
    assert m[("feeder_duplicate_trades_total", ())] == 4
    assert m[("feeder_reconnects_total", ())] == 5
    assert m[("feeder_gaps_total", ())] == 8
    assert m[("feeder_publish_backlog", (("kind", "trades"),))] == 7
    assert m[("feeder_published_records_total", ())] == 480
    assert m[("feeder_dropped_records_total", ())] == 9
    assert m[("feeder_broker_queue_depth", ())] == 11
    assert m[("feeder_publish_lingers_total", ())] == 6
    assert m[("feeder_broker_up", ())] == 1.0
    assert m[("feeder_connection_live", (("connection", "conn-public"),))] == 1.0
    assert m[("feeder_connection_live", (("connection", "conn-business"),))] == 0.0
    age = "feeder_subscription_last_message_age_seconds"
    assert m[(age, (("channel", "books"), ("endpoint", "public"), ("inst", "ETH-USDT")))] == 1.5
    assert ("feeder_publish_latency_seconds_count", ()) in m
    assert samples(snapshot(broker_ok=False))[("feeder_broker_up", ())] == 0.0


def test_metrics_read_a_new_snapshot_at_every_scrape():
    snaps = iter([snapshot(published_records=1), snapshot(published_records=2)])
    metrics = Metrics(lambda: next(snaps))
    assert b"feeder_published_records_total 1.0" in metrics.render()
    assert b"feeder_published_records_total 2.0" in metrics.render()


def test_the_server_answers_503_while_degraded():
    snap = [snapshot(conn())]
    server = HealthServer("127.0.0.1", 0, lambda: snap[0], Metrics(lambda: snap[0]))
    server.start()
    try:
        url = f"http://127.0.0.1:{server.port}"
        with urllib.request.urlopen(url + "/healthz", timeout=5) as r:
            assert r.status == 200 and orjson.loads(r.read())["status"] == "ok"
        snap[0] = snapshot(conn(phase="reconnecting"))
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(url + "/healthz", timeout=5)
        assert err.value.code == 503
        assert orjson.loads(err.value.read())["problems"] == ["conn-public is reconnecting"]
        with urllib.request.urlopen(url + "/metrics", timeout=5) as r:
            assert b"feeder_connection_live" in r.read()
    finally:
        server.stop()
