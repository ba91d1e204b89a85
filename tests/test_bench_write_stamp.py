"""bench/write_stamp.py: the latency benchmark's Redis-side write time, against a real redis-server
(the stamp comes from Redis's TIME inside the workers' versioned-write script)."""
from __future__ import annotations

import pytest
import redis

from bench import write_stamp
from tasks.settings import Settings
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
    assert stored[b"ts"] == str(T0 + 5).encode()          # the record's own fields are all there
    assert stored[b"last"] == b"35000.5"


def test_the_stamp_keeps_version_rules_and_comes_back_after_a_script_flush(stamped, redis_url):
    client = redis.Redis.from_url(redis_url)
    state = RedisState(client, Settings())
    state.write("tickers", [ticker("BTC-USDT", ts=T0 + 5)])
    first = client.hget("ticker:BTC-USDT", write_stamp.FIELD)
    # an older record is stale: neither its fields nor a new stamp are written
    assert state.write("tickers", [ticker("BTC-USDT", ts=T0 + 1, last="1")]) == {"applied": 0, "stale": 1}
    assert client.hget("ticker:BTC-USDT", write_stamp.FIELD) == first
    client.script_flush()                                # as after a Redis restart: NOSCRIPT
    assert state.write("tickers", [ticker("BTC-USDT", ts=T0 + 9)]) == {"applied": 1, "stale": 0}
    assert int(client.hget("ticker:BTC-USDT", write_stamp.FIELD)) > int(first)
    assert client.script_exists(stamped) == [True]       # the stamped script was the one loaded


def test_one_keyspace_notification_per_write(stamped, redis_url):
    """The latency probe reads the stamp on each hash notification: one write, one notification."""
    client = redis.Redis.from_url(redis_url)
    client.config_set("notify-keyspace-events", "Kh")
    try:
        sub = client.pubsub()
        sub.psubscribe("__keyspace@0__:ticker:*")
        assert sub.get_message(timeout=2)["type"] == "psubscribe"      # subscribed before writing
        RedisState(client, Settings()).write("tickers", [ticker("ETH-USDT", ts=T0)])
        client.publish("__keyspace@0__:ticker:END", "end")               # marks the end of the stream
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
