"""Operations of a redundant shard: `collector status` lists each shard's feeders and its
combined coverage and warns when a shard is down to one feeder; the feeder's /healthz says so too
(a warning) and /metrics has the gauge (collector/shards.py, snapshot.py, health.py)."""

from __future__ import annotations

import fakeredis
import orjson
import pytest

from collector import shards as shards_mod
from collector import status
from collector.health import Metrics, healthz
from collector.snapshot import FeederSnapshot
from core import coverage as coverage_store
from core import keys

NOW = 1_700_000_600_000


@pytest.fixture
def r():
    return fakeredis.FakeRedis(decode_responses=True)


def member(r, shard, fid, age_s):
    r.sadd(keys.SHARDS, shard)
    r.hset(keys.shard_key(shard), fid, str(NOW - int(age_s * 1000)))


def cover(r, shard, fid, channel, start, end):
    pipe = r.pipeline()
    coverage_store.write(
        pipe, shard, fid, [((channel, "BTC-USDT"), start, end)], now_ms=NOW, trim=False
    )
    pipe.execute()


def test_status_shows_each_shard_its_feeders_and_combined_coverage(r):
    member(r, "s1", "feeder-a", 1)
    member(r, "s1", "feeder-b", 2)
    half = shards_mod.COVERAGE_WINDOW_MS // 2
    lo = NOW - shards_mod.COVERAGE_WINDOW_MS
    # a covers the first half, b the second: together all of books5; trades only a's half
    cover(r, "s1", "feeder-a", "books5", lo - 1, lo + half + 1)
    cover(r, "s1", "feeder-b", "books5", lo + half, NOW)
    cover(r, "s1", "feeder-a", "trades-all", lo, lo + half)
    st = status._gather(r, 20, NOW)
    (sh,) = st["shards"]
    assert sh["live"] == 2 and [f["id"] for f in sh["feeders"]] == ["feeder-a", "feeder-b"]
    by_stream = {x["channel"]: x for x in sh["streams"]}
    assert by_stream["books5"]["covered_share"] == 1.0
    assert by_stream["books5"]["by"] == ["feeder-a", "feeder-b"]
    assert by_stream["trades-all"]["covered_share"] == 0.5
    assert sh["worst"]["channel"] == "trades-all"
    assert st["warnings"] == []
    text = status.format_status(st)
    assert "shard s1: 2 of 2 feeders live (feeder-a live, feeder-b live)" in text
    assert "lowest trades-all BTC-USDT 50.0%" in text


def test_a_shard_down_to_one_feeder_is_a_warning_not_a_problem(r):
    member(r, "s1", "feeder-a", 1)
    member(r, "s1", "feeder-b", 40)  # killed: its heartbeat stopped 40 s ago
    member(r, "solo", "feeder-x", 1)  # a shard that never had two: nothing to say
    st = status._gather(r, 20, NOW)
    assert st["warnings"] == ["shard s1: down to 1 live feeder(s) (feeder-b down)"]
    assert not any("shard" in p for p in st["problems"])
    assert "~ warning: shard s1: down to 1" in status.format_status(st)
    assert "shard s1: 1 of 2 feeders live (feeder-a live, feeder-b DOWN)" in status.format_status(
        st
    )


def test_stale_members_are_forgotten(r):
    member(r, "s1", "feeder-a", 1)
    member(r, "s1", "old", keys.SHARD_MEMBER_KEEP_S + 5)
    st = status._gather(r, 20, NOW)
    assert [f["id"] for f in st["shards"][0]["feeders"]] == ["feeder-a"]
    assert st["warnings"] == []


def snap(members):
    return FeederSnapshot(feeder_id="feeder-a", uptime_s=5.0, shard="s1", shard_members=members)


def test_feeder_health_warns_and_exports_the_gauge():
    lone = snap({"feeder-a": True, "feeder-b": False})
    body = healthz(lone)
    assert body["status"] == "ok"  # still collecting everything: not a 503
    assert (
        body["warnings"] and "shard s1 is down to 1 live feeder (feeder-a)" in body["warnings"][0]
    )
    assert healthz(snap({"feeder-a": True, "feeder-b": True}))["warnings"] == []
    assert healthz(snap({"feeder-a": True}))["warnings"] == []  # a single-feeder shard
    text = Metrics(lambda: lone).render().decode()
    assert 'feeder_shard_feeders_live{shard="s1"} 1.0' in text
    assert 'feeder_shard_feeders_known{shard="s1"} 2.0' in text
    assert orjson.loads(orjson.dumps(body))["shard"] == "s1"


def test_ledger_heartbeat_registers_in_its_shard_and_leaves_on_a_clean_stop():
    from tests.test_feeder_marks import make_ledger

    server = fakeredis.FakeServer()
    a, _ = make_ledger(server, "feeder-a", shard="s1")
    b, _ = make_ledger(server, "feeder-b", shard="s1")
    a.cycle()
    b.cycle()
    a._next_heartbeat = 0.0
    a.cycle()
    assert a.shard_members == {"feeder-a": True, "feeder-b": True}
    view = fakeredis.FakeRedis(server=server, decode_responses=True)
    assert view.smembers(keys.SHARDS) == {"s1"}
    b.cycle(final=True)
    assert set(view.hgetall(keys.shard_key("s1"))) == {"feeder-a"}
