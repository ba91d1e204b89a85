"""Per-feeder watermarks, the shard's combined one, the heartbeat's shard, and one FEEDER_ID per
process (collector/ledger.py, collector/identity.py)."""

from __future__ import annotations

import fakeredis
import orjson
import pytest

from collector import identity
from collector.ledger import Ledger, previous_marks
from collector.pipeline import startup_gaps
from core import keys
from core.errors import ConfigError
from okx.clock import now_ms

KEY = ("books5", "BTC-USDT")


def make_ledger(server, feeder_id, marks=None, first=None, shard="s1"):
    state = {"marks": marks or {}, "first": first or {}}

    def pull(led):
        led.marks = dict(state["marks"])
        led.first = dict(state["first"])

    led = Ledger(
        "redis://unused:1/0",
        feeder_id,
        [KEY],
        shard=shard,
        pull=pull,
        on_gap_id=lambda gid: None,
        status=lambda: {"connections": []},
    )
    led.client = fakeredis.FakeRedis(server=server)
    led._advance = led.client.register_script(led._advance.script)
    return led, state


def test_two_feeders_keep_their_own_watermarks_and_the_shared_one_only_advances():
    server = fakeredis.FakeServer()
    a, sa = make_ledger(server, "feeder-a", marks={KEY: (2_000, "20", 9)})
    b, sb = make_ledger(server, "feeder-b", marks={KEY: (1_000, "10", 9)})
    a.cycle()
    b.cycle()  # the slower feeder writes after the faster one
    r = fakeredis.FakeRedis(server=server, decode_responses=True)
    own_a = orjson.loads(r.hget(keys.feeder_watermarks("feeder-a"), "books5:BTC-USDT"))
    own_b = orjson.loads(r.hget(keys.feeder_watermarks("feeder-b"), "books5:BTC-USDT"))
    assert (own_a["ts"], own_b["ts"]) == ("2000", "1000")
    shared = r.hgetall(keys.watermark_key(*KEY))
    assert (shared["ts"], shared["id"], shared["feeder"]) == ("2000", "20", "feeder-a")
    assert r.ttl(keys.feeder_watermarks("feeder-a")) > 0
    sb["marks"] = {KEY: (3_000, "30", 9)}
    b.cycle()
    assert r.hget(keys.watermark_key(*KEY), "feeder") == "feeder-b"


def test_same_ts_lower_id_does_not_move_the_shared_mark_back():
    server = fakeredis.FakeServer()
    a, _ = make_ledger(server, "feeder-a", marks={KEY: (2_000, "21", 9)})
    b, _ = make_ledger(server, "feeder-b", marks={KEY: (2_000, "20", 9)})
    a.cycle()
    b.cycle()
    r = fakeredis.FakeRedis(server=server, decode_responses=True)
    assert r.hget(keys.watermark_key(*KEY), "id") == "21"


def test_a_restarted_feeder_starts_from_its_own_watermark_not_the_other_feeders():
    server = fakeredis.FakeServer()
    a, _ = make_ledger(server, "feeder-a", marks={KEY: (1_000, "10", 9)})
    b, _ = make_ledger(server, "feeder-b", marks={KEY: (5_000, "50", 9)})
    a.cycle()
    b.cycle()
    # feeder-a restarts; its first record is at 6 000: its gap starts at ITS 1 000
    again, _ = make_ledger(server, "feeder-a", first={KEY: (6_000, "60", 1)})
    again.cycle()
    r = fakeredis.FakeRedis(server=server, decode_responses=True)
    gap = r.hgetall(keys.gap_key("1"))
    assert (gap["start_ms"], gap["end_ms"], gap["feeder"]) == ("1000", "6000", "feeder-a")


def test_a_new_feeder_joining_a_shard_takes_no_startup_gap_from_the_other():
    server = fakeredis.FakeServer()
    a, _ = make_ledger(server, "feeder-a", marks={KEY: (1_000, "10", 9)})
    a.cycle()
    b, _ = make_ledger(server, "feeder-b", first={KEY: (6_000, "60", 1)})
    b.cycle()
    assert b.gaps_written == 0


def test_previous_marks_upgrade_and_join_rules():
    legacy = {"ts": "100", "id": "7", "seen_ms": "1"}
    # a single feeder upgraded: the shared mark has no `feeder` field, it is taken as its own
    assert previous_marks("f", [KEY], {}, [legacy]) == {KEY: legacy}
    theirs = dict(legacy, feeder="other")
    assert previous_marks("f", [KEY], {}, [theirs]) == {}
    mine = dict(legacy, feeder="f")
    assert previous_marks("f", [KEY], {}, [mine]) == {KEY: mine}
    # own watermarks win; a field that is not JSON is skipped, never a crash
    own = {"books5:BTC-USDT": orjson.dumps({"ts": "50", "id": "5"}).decode(), "x:y": "{bad"}
    assert previous_marks("f", [KEY], own, [legacy]) == {KEY: {"ts": "50", "id": "5"}}
    gaps = startup_gaps(previous_marks("f", [KEY], own, [legacy]), {KEY: (80, "8", 1)})
    assert [(g.start_ms, g.end_ms) for g in gaps] == [(50, 80)]


def test_heartbeat_carries_shard_and_host():
    server = fakeredis.FakeServer()
    a, _ = make_ledger(server, "feeder-a", shard="eu")
    a.cycle()
    beat = fakeredis.FakeRedis(server=server, decode_responses=True).hgetall(
        keys.feeder_key("feeder-a")
    )
    assert beat["shard"] == "eu" and beat["host"] == a.host


# ----- one FEEDER_ID, one process ------------------------------------------------------------------


def beat(age_ms, host="h1", pid=4242):
    return {"heartbeat_ms": str(now_ms() - age_ms), "pid": str(pid), "host": host}


@pytest.mark.parametrize(
    ("hb", "alive", "held"),
    [
        (None, True, False),  # nobody
        ((1_000, "h1"), True, True),  # live process on this host
        ((1_000, "h1"), False, False),  # SIGKILLed on this host: restart at once
        ((1_000, "h2"), False, True),  # another host: cannot tell, it is live
        ((60_000, "h2"), True, False),  # late heartbeat: gone
        ("garbage", True, False),  # not ours
    ],
)
def test_holder(hb, alive, held):
    # the heartbeat is built now, not at collection (its age is what is tested)
    if hb is None:
        fields = {}
    elif hb == "garbage":
        fields = {"heartbeat_ms": "x", "pid": "1"}
    else:
        fields = beat(hb[0], host=hb[1])
    who = identity.holder(fields, host="h1", now_ms=now_ms(), pid_alive=lambda pid: alive)
    assert (who is not None) is held


def test_claim_refuses_a_live_duplicate_with_one_line():
    r = fakeredis.FakeRedis()
    r.hset(keys.feeder_key("feeder-a"), mapping=beat(500, host="elsewhere"))
    with pytest.raises(ConfigError, match="FEEDER_ID 'feeder-a' is held by a live feeder") as e:
        identity.claim_id(r, "feeder-a", host="here", wait_s=0, clock_ms=now_ms)
    assert "\n" not in str(e.value)
    identity.claim_id(r, "feeder-b", host="here", wait_s=0, clock_ms=now_ms)  # free id


def test_claim_waits_for_a_heartbeat_that_stops():
    r = fakeredis.FakeRedis()
    r.hset(keys.feeder_key("feeder-a"), mapping=beat(500, host="elsewhere"))
    slept = []

    def sleep(s):
        slept.append(s)
        r.delete(keys.feeder_key("feeder-a"))  # the old process went away meanwhile

    identity.claim_id(r, "feeder-a", host="here", wait_s=30, clock_ms=now_ms, sleep=sleep)
    assert slept == [1.0]


def test_the_ledger_thread_starts_and_stops():
    # its attributes must not shadow threading.Thread's (a `_started` set once did)
    server = fakeredis.FakeServer()
    led, _ = make_ledger(server, "feeder-a", marks={KEY: (1_000, "1", 9)})
    led.start()
    led.stop(3.0)
    assert not led.is_alive()
    r = fakeredis.FakeRedis(server=server, decode_responses=True)
    assert r.hget(keys.watermark_key(*KEY), "ts") == "1000"


@pytest.mark.integration
def test_a_second_feeder_with_a_live_id_exits_2_with_one_line(redis_url):
    """The process, against a real redis-server: a live heartbeat from another host holds the
    id; the new feeder refuses before it opens any socket."""
    import subprocess
    import sys

    import redis as redis_lib

    from tests.test_feeder_process import ROOT, run_env

    r = redis_lib.Redis.from_url(redis_url)
    r.hset(keys.feeder_key("feeder-a"), mapping=beat(200, host="another-host"))
    proc = subprocess.run(
        [sys.executable, "-m", "collector"],
        cwd=ROOT,
        env=run_env(
            REDIS_URL=redis_url,
            FEEDER_ID="feeder-a",
            FEEDER_ID_WAIT="0",
            OKX_WS_URL="ws://127.0.0.1:9",
            FEEDER_HEALTH_PORT="0",
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    lines = [x for x in proc.stderr.splitlines() if "FEEDER_ID 'feeder-a' is held" in x]
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert "another-host" in lines[0]
