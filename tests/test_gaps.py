"""The Gap value and its Redis hash: the exact format running deployments hold."""

from __future__ import annotations

import dataclasses

import fakeredis
import pytest

from core import keys
from core.errors import CollectorError
from core.gaps import RECORD_FIELDS, BadGap, Gap, record_gap
from tasks.backfill.ledger import GapLedger

# What the ledger wrote for a feeder's reconnect gap before the Gap value existed (the old
# collector/ledger.py gap_fields, written out by hand): every value a string, ids "" when unknown.
STORED = {
    "id": "42",
    "channel": "trades-all",
    "instId": "BTC-USDT",
    "start_ms": "1700000000000",
    "end_ms": "1700000005000",
    "start_id": "12",
    "end_id": "16",
    "cause": "reconnect",
    "status": "open",
    "reason": "reconnect: no data from trades-all BTC-USDT between these bounds",
    "feeder": "feeder-1",
    "created_ms": "1700000009000",
    "updated_ms": "1700000009000",
}


def reconnect_gap() -> Gap:
    return Gap(
        "trades-all",
        "BTC-USDT",
        1_700_000_000_000,
        1_700_000_005_000,
        "reconnect",
        start_id="12",
        end_id="16",
        reason="reconnect: no data from trades-all BTC-USDT between these bounds",
    )


def test_recorded_gap_writes_exactly_the_old_hash():
    fields = reconnect_gap().recorded("42", "feeder-1", 1_700_000_009_000).to_fields()
    assert fields == STORED
    assert list(fields) == list(RECORD_FIELDS)  # same fields, in the old order


def test_gap_without_ids_or_reason_stores_empty_strings():
    # The old writer's gap.get("start_id") or "" / gap.get("reason", "")
    fields = (
        Gap("candle1m", "ETH-USDT", 5, 9, "manual").recorded("1", "backfill-manual", 10).to_fields()
    )
    assert fields == {
        "id": "1",
        "channel": "candle1m",
        "instId": "ETH-USDT",
        "start_ms": "5",
        "end_ms": "9",
        "start_id": "",
        "end_id": "",
        "cause": "manual",
        "status": "open",
        "reason": "",
        "feeder": "backfill-manual",
        "created_ms": "10",
        "updated_ms": "10",
    }


def test_round_trip_through_the_hash_fields():
    gap = reconnect_gap().recorded("42", "feeder-1", 1_700_000_009_000)
    assert Gap.from_fields(gap.to_fields()) == gap
    assert Gap.from_fields(STORED).to_fields() == STORED


def test_a_stored_hash_as_redis_returns_it_with_the_workers_fields_reads_back_unchanged():
    # bytes keys and values (redis-py without decode_responses), plus what backfill added
    raw = {k.encode(): v.encode() for k, v in STORED.items()}
    raw |= {
        b"status": b"filling",
        b"owner": b"w1:ab",
        b"lease_until": b"1700000129000",
        b"attempts": b"1",
        b"cursor": b"14",
        b"written": b"2",
        b"pages": b"1",
    }
    gap = Gap.from_fields(raw)
    assert (gap.id, gap.status, gap.start_ms, gap.end_id) == (
        "42",
        "filling",
        1_700_000_000_000,
        "16",
    )
    assert dict(gap.extra) == {
        "owner": "w1:ab",
        "lease_until": "1700000129000",
        "attempts": "1",
        "cursor": "14",
        "written": "2",
        "pages": "1",
    }
    assert gap.to_fields() == {k.decode(): v.decode() for k, v in raw.items()}


def test_record_gap_stores_the_hash_and_both_indexes():
    r = fakeredis.FakeRedis()
    r.set(keys.GAPS_SEQ, 41)
    stored = record_gap(r, reconnect_gap(), "feeder-1", 1_700_000_009_000, atomic=False)
    assert stored.id == "42"
    assert {k.decode(): v.decode() for k, v in r.hgetall(keys.gap_key("42")).items()} == STORED
    assert r.zscore(keys.GAPS_OPEN, "42") == 1_700_000_000_000
    assert r.zscore(keys.GAPS_ALL, "42") == 1_700_000_009_000


def test_workers_ledger_creates_the_same_hash_and_reads_it_back():
    r = fakeredis.FakeRedis()
    r.set(keys.GAPS_SEQ, 41)
    ledger = GapLedger(r)
    gid = ledger.create(reconnect_gap(), "feeder-1", 1_700_000_009_000)
    assert ledger.get(gid) == STORED
    assert Gap.from_fields(ledger.get(gid)) == reconnect_gap().recorded(
        "42", "feeder-1", 1_700_000_009_000
    )


def test_gap_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        reconnect_gap().end_ms = 0  # type: ignore[misc]


@pytest.mark.parametrize(
    "change, what",
    [
        ({"channel": ""}, "channel"),
        ({"channel": None}, "channel"),
        ({"instId": 7}, "instId"),
        ({"start_ms": "1700000000000"}, "start_ms"),
        ({"end_ms": 1.5}, "end_ms"),
        ({"end_ms": True}, "end_ms"),
        ({"start_ms": -1}, "start_ms"),
        ({"start_id": 12}, "start_id"),
        ({"end_id": None}, "end_id"),
        ({"cause": "gremlins"}, "cause"),
        ({"status": "done"}, "status"),
        ({"reason": None}, "reason"),
        ({"created_ms": "0"}, "created_ms"),
        ({"extra": (("owner", 1),)}, "extra"),
        ({"extra": (("channel", "x"),)}, "extra"),
    ],
)
def test_bad_values_are_refused_with_the_field_named(change, what):
    kwargs = {"channel": "trades", "instId": "X", "start_ms": 1, "end_ms": 2, "cause": "stale"}
    with pytest.raises(BadGap, match=what) as info:
        Gap(**(kwargs | change))
    assert isinstance(info.value, CollectorError) and isinstance(info.value, ValueError)


def test_an_end_before_the_start_is_kept_as_found():
    # A private stream's records are not ordered by uTime across orders: refusing would raise
    # in the feeder's data path, so the window is stored as it was found.
    assert Gap("orders", "SPOT", 10, 5, "reconnect").end_ms == 5


def test_only_a_recorded_gap_has_a_hash():
    with pytest.raises(BadGap, match="no id"):
        reconnect_gap().to_fields()


@pytest.mark.parametrize(
    "broken, what",
    [
        ({"cause": None}, "lacks cause"),
        ({"id": None}, "lacks id"),
        ({"start_ms": "soon"}, "start_ms"),
        ({"status": "eaten"}, "status"),
    ],
)
def test_a_stored_hash_that_is_not_a_gap_is_refused(broken, what):
    fields = {k: v for k, v in (STORED | broken).items() if v is not None}
    with pytest.raises(BadGap, match=what):
        Gap.from_fields(fields)


def test_a_hash_missing_optional_fields_reads_with_their_defaults():
    fields = {
        k: v
        for k, v in STORED.items()
        if k not in ("start_id", "end_id", "reason", "feeder", "created_ms", "updated_ms")
    }
    gap = Gap.from_fields(fields)
    assert (gap.start_id, gap.end_id, gap.reason, gap.feeder, gap.created_ms) == ("", "", "", "", 0)
