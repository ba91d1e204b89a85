"""The latency benchmark's instruments: bench/write_stamp.py against a real redis-server (the stamp
comes from Redis's TIME inside the workers' versioned-write script), okxsim's send log
(bench/sim_server.py), and the arithmetic of bench.common's LatencyProbe and StageMonitor on
synthetic samples."""

from __future__ import annotations

import pytest
import redis

from bench import write_stamp
from core.settings import WorkerSettings as Settings
from tasks.writers import redis_state
from tasks.writers.redis_state import RedisState
from tests.workers_fixtures import T0, ticker


@pytest.fixture
def stamped(monkeypatch):
    # install() rebinds module globals: let monkeypatch put the production ones back afterwards.
    monkeypatch.setattr(redis_state, "SCRIPTS", dict(redis_state.SCRIPTS))
    monkeypatch.setattr(redis_state, "VERSIONED_SHA", redis_state.VERSIONED_SHA)
    return write_stamp.install()


def server_us(client: redis.Redis) -> int:
    sec, usec = client.time()
    return sec * 1_000_000 + usec


def test_a_state_write_carries_redis_time_of_the_write(stamped, redis_url):
    client = redis.Redis.from_url(redis_url)
    state = RedisState(client, Settings())
    before = server_us(client)
    assert state.write("tickers", [ticker("BTC-USDT", ts=T0 + 5)]) == {"applied": 1, "stale": 0}
    after = server_us(client)
    stored = client.hgetall("ticker:BTC-USDT")
    assert before <= int(stored[write_stamp.FIELD.encode()]) <= after
    assert stored[b"ts"] == str(T0 + 5).encode()  # the record's own fields are all there
    assert stored[b"last"] == b"35000.5"


def test_the_stamp_keeps_version_rules_and_comes_back_after_a_script_flush(stamped, redis_url):
    client = redis.Redis.from_url(redis_url)
    state = RedisState(client, Settings())
    state.write("tickers", [ticker("BTC-USDT", ts=T0 + 5)])
    first = client.hget("ticker:BTC-USDT", write_stamp.FIELD)
    # an older record is stale: neither its fields nor a new stamp are written
    assert state.write("tickers", [ticker("BTC-USDT", ts=T0 + 1, last="1")]) == {
        "applied": 0,
        "stale": 1,
    }
    assert client.hget("ticker:BTC-USDT", write_stamp.FIELD) == first
    client.script_flush()  # as after a Redis restart: NOSCRIPT
    assert state.write("tickers", [ticker("BTC-USDT", ts=T0 + 9)]) == {"applied": 1, "stale": 0}
    assert int(client.hget("ticker:BTC-USDT", write_stamp.FIELD)) > int(first)
    assert client.script_exists(stamped) == [True]  # the stamped script was the one loaded


def test_one_keyspace_notification_per_write(stamped, redis_url):
    """The latency probe reads the stamp on each hash notification: one write, one notification."""
    client = redis.Redis.from_url(redis_url)
    client.config_set("notify-keyspace-events", "Kh")
    try:
        sub = client.pubsub()
        sub.psubscribe("__keyspace@0__:ticker:*")
        assert sub.get_message(timeout=2)["type"] == "psubscribe"  # subscribed before writing
        RedisState(client, Settings()).write("tickers", [ticker("ETH-USDT", ts=T0)])
        client.publish("__keyspace@0__:ticker:END", "end")  # marks the end of the stream
        got = []
        while (msg := sub.get_message(timeout=2)) is not None and msg["data"] != b"end":
            got.append(msg["data"])
        assert got == [b"hset"]
        sub.close()
    finally:
        client.config_set("notify-keyspace-events", "")


def test_a_changed_production_script_is_refused_not_silently_unstamped():
    with pytest.raises(RuntimeError, match="versioned-write script changed"):
        write_stamp.stamped_script("redis.call('SET', KEYS[1], ARGV[1])")


# ----- the probe's arithmetic, on synthetic samples ---------------------------------------------


class FakeSim:
    """okxsim's send log: [(channel, instId, ts or tradeId, CLOCK_MONOTONIC s)]."""

    def __init__(self, sent):
        self.sent = sent

    def sent_since(self, t):
        return [s for s in self.sent if s[3] >= t]


def test_probe_window_times_writes_by_redis_stamp_and_notifications_by_arrival():
    from bench.common import LatencyProbe

    sim = FakeSim(
        [
            ("tickers", "BTC-USDT", 1000, 10.000),
            ("books5", "BTC-USDT", 1000, 10.001),
            ("trades", "BTC-USDT", 77, 10.002),
        ]
    )
    probe = LatencyProbe("redis://unused", sim)
    # (seen, key, ts, ts -> seen ms, written): written 1 ms and 3 ms after the sends
    probe.samples += [
        (10.0015, "ticker:BTC-USDT", 1000, 2.0, 10.001),
        (10.0045, "books5:BTC-USDT", 1000, 2.5, 10.004),
        (10.0050, "ticker:ETH-USDT", 1000, 9.0, 10.0049),  # never sent: unmatched
        (10.0060, "ticker:BTC-USDT", 1000, 9.0, None),
    ]  # no stamp: seen only
    probe.trade_samples.append((10.0052, "trades:BTC-USDT", 77))
    w = probe.window(9.0, 11.0)
    assert w["write"]["n"] == 2 and w["write"]["unmatched"] == 1
    assert w["write"]["p50_ms"] == pytest.approx(3.0) and w["write"]["max_ms"] == pytest.approx(3.0)
    assert sorted(round(x, 1) for x in (w["seen"]["p50_ms"], w["seen"]["max_ms"])) == [3.5, 6.0]
    assert w["seen"]["n"] == 3 and w["seen"]["unmatched"] == 1
    assert w["trades_seen"]["p50_ms"] == pytest.approx(3.2)
    assert probe.window(10.0055, 11.0)["write"]["n"] == 0  # windows select by write time


def test_stages_trace_each_write_to_its_task_push_and_pickup():
    from bench.common import StageMonitor

    sim = FakeSim([("tickers", "BTC-USDT", 1000, 10.000), ("tickers", "BTC-USDT", 1100, 10.100)])
    mon = StageMonitor("redis://unused", sim)
    mon.pushes.update({"tag-a": 10.0004, "tag-b": 10.1005})
    mon.fetches += [(10.0010, "tag-a"), (10.1012, "tag-b")]
    mon.writes += [(10.0019, "ticker:BTC-USDT", 1000), (10.1030, "ticker:BTC-USDT", 1100)]
    assert mon.stages(9.0, 11.0)["task"]["n"] == 2
    first, second = mon.stages(9.0, 10.05), mon.stages(10.05, 11.0)  # one write each
    assert [first[k]["p50_ms"] for k in ("feeder", "pickup", "task")] == pytest.approx(
        [0.4, 0.6, 0.9]
    )
    assert [second[k]["p50_ms"] for k in ("feeder", "pickup", "task")] == pytest.approx(
        [0.5, 0.7, 1.8]
    )
    assert first["total"]["p50_ms"] == pytest.approx(1.9) and second["total"][
        "p50_ms"
    ] == pytest.approx(3.0)


class FakeHub:
    """What SendLog wraps: send, cork/uncork (frames of a market step written together), subs."""

    def __init__(self, subs):
        self.subs = set(subs)
        self._corked = None
        self.written = []

    def send(self, key, obj):
        if self._corked is None:
            self.written.append(key)
        else:
            self._corked.setdefault(key, []).append(obj)

    def cork(self):
        self._corked = {}

    def uncork(self):
        corked, self._corked = self._corked, None
        self.written.extend(corked or ())


def test_send_log_stamps_step_frames_at_the_write_and_others_at_once(monkeypatch):
    from bench import sim_server

    clock = iter([1.0, 2.0, 3.0, 4.0])
    monkeypatch.setattr(sim_server.time, "monotonic", lambda: next(clock))
    hub = FakeHub({("tickers", "BTC-USDT"), ("trades-all", "BTC-USDT"), ("books5", "BTC-USDT")})
    log = sim_server.SendLog(hub)
    tick = {"data": [{"ts": "1000"}]}
    trade = {"data": [{"tradeId": "77", "ts": "1000"}]}
    hub.send(("tickers", "BTC-USDT"), tick)  # outside a step: stamped at once (1.0)
    hub.send(("trades-all", "BTC-USDT"), trade)  # also at once (2.0)
    hub.cork()
    hub.send(("books5", "BTC-USDT"), tick)
    hub.send(("trades-all", "BTC-USDT"), {"data": [{"tradeId": "78"}]})
    hub.send(("tickers", "ETH-USDT"), tick)  # not subscribed: not logged
    hub.send(("candle1m", "BTC-USDT"), tick)  # not a logged channel
    assert log.since(0) == [("tickers", "BTC-USDT", 1000, 1.0), ("trades", "BTC-USDT", 77, 2.0)]
    hub.uncork()  # the step's frames, written at 3.0
    assert log.since(2.5) == [("books5", "BTC-USDT", 1000, 3.0), ("trades", "BTC-USDT", 78, 3.0)]
