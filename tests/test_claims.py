"""Publish claims (collector/claims.py): what the script pushes is exactly the tasks the feeder
offered less the records another feeder already pushed, in messages a worker decodes like any
other; and the publisher claims only while a peer of its shard is live."""

from __future__ import annotations

import base64
import json
import logging
import time

import orjson
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector import claims
from collector.claims import TaskSpec, b64
from collector.outbox import Outbox
from collector.publisher import Publisher
from core import contract, keys
from core.identity import identity
from tests.polling import wait_for

pytestmark = pytest.mark.integration

QUEUE = contract.INGEST_QUEUE


@given(st.lists(st.binary(max_size=40), max_size=8))
def test_padded_base64_pieces_join_into_the_base64_of_the_joined_pieces(pieces):
    joined = b"".join(b64(p) for p in pieces)
    decoded = base64.b64decode(joined)
    assert decoded.replace(b" ", b"") == b"".join(pieces).replace(b" ", b"")
    padded = b"".join(p + b" " * (-len(p) % 3) for p in pieces)
    assert decoded == padded


def _trade(inst: str, tid: int) -> dict:
    return {"instId": inst, "tradeId": str(tid), "px": "1.5", "sz": "2", "side": "buy",
            "ts": str(1_700_000_000_000 + tid * 7), "count": "1", "source": "ws",
            "seqId": None, "channel": "trades-all"}  # fmt: skip


def _book(inst: str, seq: int) -> dict:
    return {"instId": inst, "channel": "books5", "ts": str(1_700_000_000_000 + seq * 3),
            "seqId": seq, "asks": [["10.5", "1", "0", "2"]], "bids": [["10.4", "3", "0", "1"]],
            "depth": 5, "full": False}  # fmt: skip


def _envelope(kind: str, records: list, batch: int) -> dict:
    return contract.make_batch(kind, records, source="ws", producer="feeder-a", shard="s1",
                               batch=batch, sent_ms=1_700_000_000_123)  # fmt: skip


def _decode(raw: bytes) -> tuple[str, list]:
    """As a worker does: kombu's JSON message, the base64 body, the JSON [args, kwargs, embed]
    (with the stdlib parser too: kombu falls back to it)."""
    msg = orjson.loads(raw)
    assert msg["properties"]["body_encoding"] == "base64"
    body = base64.b64decode(msg["body"])
    args, kwargs, embed = orjson.loads(body)
    assert json.loads(body) == [args, kwargs, embed]
    assert kwargs == {} and embed["chain"] is None
    return msg["headers"]["task"], args


def _run(client: redis.Redis, specs: list[TaskSpec], ttl_ms: int = 10_000) -> list:
    call = claims.build(specs, "s1", ttl_ms)
    depth, pushed, skipped = client.register_script(claims.SCRIPT)(keys=call.keys, args=call.argv)
    return [depth, pushed, skipped]


def _claim(client: redis.Redis, kind: str, rec: dict) -> None:
    _k, scope, bucket, member = identity(kind, rec)
    client.sadd(keys.claim("s1", kind, scope, bucket), member)


records = st.lists(st.tuples(st.sampled_from(["trades", "books"]), st.integers(1, 40)),
                   min_size=1, max_size=30, unique=True)  # fmt: skip


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(recs=records, taken=st.sets(st.integers(0, 29)), mixed=st.booleans())
def test_the_pushed_tasks_are_the_offered_ones_less_what_was_claimed(redis_url, recs, taken, mixed):
    client = redis.Redis.from_url(redis_url)
    client.flushall()
    by_kind: dict[str, list[dict]] = {}
    claimed: set[tuple[str, str]] = set()
    for i, (kind, n) in enumerate(recs):
        rec = _trade("BTC-USDT", n) if kind == "trades" else _book("ETH-USDT", n)
        by_kind.setdefault(kind, []).append(rec)
        if i in taken:  # the other feeder pushed this one before
            _claim(client, kind, rec)
            claimed.add((kind, orjson.dumps(rec).decode()))
    envs = [_envelope(kind, rs, b) for b, (kind, rs) in enumerate(sorted(by_kind.items()))]
    if mixed:
        specs = [TaskSpec(contract.INGEST_MIXED_TASK, "<mixed>", envs, mixed=True)]
    else:
        specs = [TaskSpec(contract.INGEST_TASKS[e["kind"]], "<one>", [e]) for e in envs]

    depth, pushed, skipped = _run(client, specs)

    expected = [dict(e, records=[r for r in e["records"]
                                 if (e["kind"], orjson.dumps(r).decode()) not in claimed])
                for e in envs]  # fmt: skip
    expected = [e for e in expected if e["records"]]
    got = [_decode(m) for m in reversed(client.lrange(QUEUE, 0, -1))]
    if mixed:
        assert got == ([(contract.INGEST_MIXED_TASK, [expected])] if expected else [])
    else:
        assert got == [(contract.INGEST_TASKS[e["kind"]], [e]) for e in expected]
    assert skipped == len(claimed) and pushed == depth == len(got)
    # every record pushed is now claimed: the other feeder's copy would be left out
    for e in expected:
        for rec in e["records"]:
            _k, scope, bucket, member = identity(e["kind"], rec)
            assert client.sismember(keys.claim("s1", e["kind"], scope, bucket), member)
    client.close()


def test_a_second_feeders_copy_is_not_pushed_and_claims_expire(redis_url):
    client = redis.Redis.from_url(redis_url)
    trades = [_trade("BTC-USDT", n) for n in range(5)]
    first = [TaskSpec(contract.INGEST_TASKS["trades"], "<a>", [_envelope("trades", trades, 1)])]
    assert _run(client, first, ttl_ms=60_000) == [1, 1, 0]
    # the other feeder cut the same records differently: 2 of its 4 are new
    more = trades[3:] + [_trade("BTC-USDT", 9), _trade("BTC-USDT", 10)]
    second = [TaskSpec(contract.INGEST_TASKS["trades"], "<b>", [_envelope("trades", more, 7)])]
    assert _run(client, second, ttl_ms=60_000) == [2, 1, 2]
    _name, args = _decode(client.lindex(QUEUE, 0))
    assert [r["tradeId"] for r in args[0]["records"]] == ["9", "10"]
    assert args[0]["batch"] == 7 and args[0]["producer"] == "feeder-a"
    # all claimed: nothing pushed, the queue's length still answered
    assert _run(client, second) == [2, 0, 4]
    ttls = [client.pttl(k) for k in client.scan_iter(match=keys.CLAIM_PREFIX + "*")]
    assert ttls and all(0 < t <= 10_000 for t in ttls)


def test_a_record_without_an_identity_is_always_pushed(redis_url):
    client = redis.Redis.from_url(redis_url)
    odd = {"instId": "BTC-USDT", "px": "1"}  # no tradeId: not one identity can be given
    spec = [TaskSpec(contract.INGEST_TASKS["trades"], "<x>", [_envelope("trades", [odd], 1)])]
    assert _run(client, spec) == [1, 1, 0]
    assert _run(client, spec) == [2, 1, 0]
    assert _decode(client.lindex(QUEUE, 0))[1][0]["records"] == [odd]


def _taken(outbox: Outbox, ids: range) -> list:
    for i in ids:
        rec = _trade("BTC-USDT", i)
        outbox.put("trades", "trades-all", "BTC-USDT", int(rec["ts"]), str(i), rec,
                   time.monotonic())  # fmt: skip
    return [("trades", outbox.take("trades", 500))]


def test_the_publisher_claims_only_while_a_peer_is_live(redis_url):
    client = redis.Redis.from_url(redis_url)
    view = {"a": True}
    a = Publisher(Outbox(), redis_url, "a", shard="s1", claim_ttl_s=10, standby_delay_s=0.1,
                  shard_view=lambda: view)  # fmt: skip
    b = Publisher(Outbox(), redis_url, "b", shard="s1", claim_ttl_s=10, standby_delay_s=0.1,
                  shard_view=lambda: view)  # fmt: skip

    a._role()
    assert not a.claiming and not a.standby
    assert a._publish(_taken(a.outbox, range(0, 4)))  # alone: a plain LPUSH, nothing claimed
    assert not list(client.scan_iter(match=keys.CLAIM_PREFIX + "*"))
    view.update(b=True)
    a._role(), b._role()
    assert (a.claiming, a.standby, b.claiming, b.standby) == (True, False, True, True)
    assert a._publish(_taken(a.outbox, range(4, 8)))
    assert b._publish(_taken(b.outbox, range(2, 10)))  # 4..7 were a's; 2, 3 were not claimed
    assert (a.claimed_by_peer, b.claimed_by_peer) == (0, 4)
    assert b.marks[("trades-all", "BTC-USDT")][1] == "9"  # b's watermark covers what a pushed
    pushed = [_decode(m)[1][0]["records"] for m in reversed(client.lrange(QUEUE, 0, -1))]
    assert [[r["tradeId"] for r in rs] for rs in pushed] == [
        ["0", "1", "2", "3"], ["4", "5", "6", "7"], ["2", "3", "8", "9"]]  # fmt: skip
    assert b.published == 8  # all of its records are on the queue, by it or by a
    view["a"] = False  # the leader's heartbeat is late: b leads, claims no more
    b._role()
    assert (b.claiming, b.standby) == (False, False)
    client.close()


def test_take_received_by_leaves_the_records_not_yet_due():
    box = Outbox()
    for i, t in enumerate([1.0, 2.0, 3.0, 4.0]):
        box.put("trades", "trades-all", "X", i, str(i), {"i": i}, t)
    assert box.oldest() == 1.0
    assert [it[4] for it in box.take("trades", 500, 2.5)] == ["0", "1"]
    assert [it[4] for it in box.take("trades", 1, 9.0)] == ["2"]
    assert box.oldest() == 4.0 and box.take("trades", 500, 3.9) == []


def test_a_standby_publishes_a_record_only_once_its_delay_is_over(redis_url):
    client = redis.Redis.from_url(redis_url)
    view = {"a": True, "b": True}
    b = Publisher(Outbox(), redis_url, "b", shard="s1", claim_ttl_s=600, standby_delay_s=300,
                  shard_view=lambda: view)  # fmt: skip
    now = time.monotonic()
    old, new = _trade("BTC-USDT", 1), _trade("BTC-USDT", 2)
    b.outbox.put("trades", "trades-all", "BTC-USDT", int(old["ts"]), "1", old, now - 301)
    b.outbox.put("trades", "trades-all", "BTC-USDT", int(new["ts"]), "2", new, now)
    b.start()
    wait_for(lambda: client.llen(QUEUE), timeout=10, what="the due record")
    assert b.standby
    assert [r["tradeId"] for r in _decode(client.lindex(QUEUE, 0))[1][0]["records"]] == ["1"]
    assert b.outbox.backlog() == 1  # not due for 300 s: still held
    b.flush(5.0)  # stopping: a standby publishes everything at once
    assert b.outbox.backlog() == 0 and client.llen(QUEUE) == 2
    client.close()


def test_a_failing_claim_script_falls_back_to_plain_pushes(redis_url, monkeypatch, caplog):
    caplog.set_level(logging.ERROR, logger="collector.publisher")
    client = redis.Redis.from_url(redis_url)
    monkeypatch.setattr(claims, "SCRIPT", "return redis.error_reply('ERR broken on purpose')")
    view = {"a": True, "b": True}
    a = Publisher(Outbox(), redis_url, "a", shard="s1", claim_ttl_s=10, shard_view=lambda: view)
    a._role()
    assert a.claiming
    assert a._publish(_taken(a.outbox, range(0, 3)))  # published all the same, plainly
    assert [r["tradeId"] for r in _decode(client.lindex(QUEUE, 0))[1][0]["records"]] == [
        "0", "1", "2"]  # fmt: skip
    assert a.claim_failures == 1 and not a.claiming
    assert "claim script failed" in caplog.text and "broken on purpose" in caplog.text
    a._role()
    assert not a.claiming  # off for CLAIMS_OFF_S
    a._claims_off_until = 0.0
    a._role()
    assert a.claiming  # and tried again after
    client.close()
