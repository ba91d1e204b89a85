"""The coverage-aware ledger: a gap another feeder of its shard covered is closed `covered`
before any REST call, a partly covered one is narrowed to its uncovered parts, a fresh one waits
a bounded time for the coverage to be written (tasks/backfill/coverage.py, repair.py, sweep.py;
the feeder's record-time check in collector/ledger.py)."""

from __future__ import annotations

import fakeredis
import mongomock
import pytest

from core import coverage as coverage_store
from core import keys
from core.gaps import Gap, record_gap
from core.settings import WorkerSettings as Settings
from tasks.backfill import coverage
from tasks.backfill.ledger import GapLedger
from tasks.backfill.repair import Repairer
from tasks.backfill.sweep import sweep
from tasks.writers import Store

T = 1_700_000_000_000
STREAM = ("trades-all", "BTC-USDT")
SETTINGS = Settings(books_sample_ms=0, books_retention_s=0)


class CountingSource:
    """REST that records every request and has nothing to give."""

    def __init__(self):
        self.steps = []

    def pages(self, step, resume):
        self.steps.append((step.kind, step.key))
        return iter(())


@pytest.fixture
def env():
    r = fakeredis.FakeRedis()
    db = mongomock.MongoClient()["okex"]
    return r, GapLedger(r, lease_ms=10_000), Store(db, r, SETTINGS)


def feeder_gap(r, start, end, *, feeder="feeder-a", shard="s1", created=T, channel=STREAM[0]):
    gap = Gap(channel, STREAM[1], start, end, "startup", extra=(("shard", shard),))
    return record_gap(r, gap, feeder, created, atomic=True).id


def cover(r, feeder, start, end, shard="s1", channel=STREAM[0]):
    pipe = r.pipeline()
    coverage_store.write(
        pipe, shard, feeder, [((channel, STREAM[1]), start, end)], now_ms=end, trim=False
    )
    pipe.execute()


def repairer(ledger, store, source, now, **kw):
    return Repairer(ledger, source, store, clock=lambda: now, coverage_wait_ms=5_000, **kw)


# ----- decide (pure) ------------------------------------------------------------------------------


def g(**kw):
    base = {"id": "1", "shard": "s1", "feeder": "a", "start_ms": "100", "end_ms": "200"}
    base["created_ms"] = "0"
    return {**base, **kw}


def test_decide():
    d = coverage.decide
    assert d(g(), {"b": [(50, 250)]}, 10, 5).action == "covered"
    assert d(g(), {"b": [(50, 250)]}, 10, 5).covered_by == ["b"]
    assert d(g(), {"a": [(50, 250)]}, 99, 5).action == "repair"  # its own coverage: no
    assert d(g(shard=""), {"b": [(50, 250)]}, 99, 5).action == "repair"  # manual, sweep, old
    assert d(g(), {"b": [(50, 150)]}, 1, 5).action == "wait"  # young, b's end may come
    v = d(g(), {"b": [(50, 150)]}, 99, 5)
    assert (v.action, v.pieces, v.covered_by) == ("split", [(150, 200)], ["b"])
    assert d(g(split_from="7"), {"b": [(50, 150)]}, 1, 5).action == "split"  # waited already
    assert d(g(), {}, 1, 5).action == "repair"  # nobody else: nothing to wait for
    assert d(g(start_ms="300"), {"b": [(0, 999)]}, 99, 5).action == "repair"  # end < start


# ----- the repair task ----------------------------------------------------------------------------


def test_a_gap_the_other_feeder_covered_is_closed_without_rest(env):
    r, ledger, store = env
    cover(r, "feeder-b", T - 1_000, T + 10_000)
    gid = feeder_gap(r, T, T + 5_000)
    source = CountingSource()
    res = repairer(ledger, store, source, T + 1).run(gid)
    assert res.status == "covered" and source.steps == []
    h = ledger.get(gid)
    assert (h["status"], h["covered_by"]) == ("covered", "feeder-b")
    assert r.zcard(keys.GAPS_OPEN) == 0
    assert ledger.claim(gid, "x", T + 2) == (False, "covered")  # final


def test_a_fresh_gap_waits_for_coverage_then_closes(env):
    r, ledger, store = env
    cover(r, "feeder-b", T - 1_000, T + 2_000)  # b's write is behind the gap's end
    gid = feeder_gap(r, T, T + 5_000, created=T + 5_000)
    source = CountingSource()
    res = repairer(ledger, store, source, T + 5_500).run(gid)
    assert (res.status, res.countdown) == ("released", 1.0) and source.steps == []
    assert ledger.get(gid)["status"] == "open" and "failures" not in ledger.get(gid)
    cover(r, "feeder-b", T - 1_000, T + 6_000)  # the next second's write
    res = repairer(ledger, store, source, T + 6_500).run(gid)
    assert res.status == "covered" and source.steps == []


def test_the_wait_is_bounded_and_only_the_uncovered_part_goes_to_rest(env):
    r, ledger, store = env
    cover(r, "feeder-b", T - 1_000, T + 2_000)  # b died at T + 2 000
    gid = feeder_gap(r, T, T + 5_000, created=T + 5_000)
    source = CountingSource()
    res = repairer(ledger, store, source, T + 5_000 + 5_001).run(gid)
    assert res.status == "covered"
    h = ledger.get(gid)
    part = ledger.get(h["split_into"])
    assert (int(part["start_ms"]), int(part["end_ms"])) == (T + 2_000, T + 5_000)
    assert (part["split_from"], part["shard"], part["feeder"]) == (gid, "s1", "feeder-a")
    assert part["status"] == "filled"  # repaired inline (no sender given): REST for that part
    assert source.steps == [("trades", "BTC-USDT")]


def test_split_parts_go_to_the_sender_when_there_is_one(env):
    r, ledger, store = env
    cover(r, "feeder-b", T + 1_000, T + 2_000)
    gid = feeder_gap(r, T, T + 5_000)
    sent = []
    source = CountingSource()
    res = repairer(ledger, store, source, T + 99_999, on_new_gap=sent.append).run(gid)
    assert res.status == "covered" and source.steps == []
    parts = [ledger.get(x) for x in sent]
    bounds = [(int(p["start_ms"]) - T, int(p["end_ms"]) - T) for p in parts]
    assert bounds == [(0, 1_000), (2_000, 5_000)]
    assert all(p["status"] == "open" for p in parts)


def test_books_gap_covered_is_not_unrepairable(env):
    r, ledger, store = env
    cover(r, "feeder-b", T - 1, T + 10_000, channel="books")
    gid = feeder_gap(r, T, T + 5_000, channel="books")
    res = repairer(ledger, store, CountingSource(), T + 1).run(gid)
    assert res.status == "covered"


def test_the_sweep_closes_covered_gaps_before_sending_them(env):
    r, ledger, _ = env
    gid = feeder_gap(r, T, T + 5_000)
    other = feeder_gap(r, T + 20_000, T + 30_000)
    cover(r, "feeder-b", T - 1, T + 10_000)
    sent = []
    out = sweep(
        ledger,
        now_ms=T + 10 * 60_000,
        settings=Settings(),
        send_repair=sent.append,
        send_snapshot=lambda: None,
    )
    assert out["covered"] == 1
    assert ledger.get(gid)["status"] == "covered" and gid not in sent
    assert other in sent  # not covered: re-sent as before


def test_record_time_check_closes_a_gap_already_covered():
    from tests.test_feeder_marks import make_ledger

    server = fakeredis.FakeServer()
    r = fakeredis.FakeRedis(server=server, decode_responses=True)
    cover(r, "feeder-b", T - 1_000, T + 10_000)
    led, state = make_ledger(server, "feeder-a", shard="s1")
    led.keys = [STREAM]
    asked = []
    led.on_gap_id = asked.append
    led.add_gaps([Gap(*STREAM, T, T + 5_000, "reconnect"), Gap(*STREAM, T, T + 50_000, "stale")])
    led.cycle()
    first, second = r.hgetall(keys.gap_key("1")), r.hgetall(keys.gap_key("2"))
    assert (first["status"], first["covered_by"]) == ("covered", "feeder-b")
    assert second["status"] == "open"
    assert asked == ["2"] and r.zrange(keys.GAPS_OPEN, 0, -1) == ["2"]


# ----- both feeders down: one gap per window --------------------------------------------------------


def test_both_down_windows_become_one_gap_whichever_repair_runs_first(env):
    """a down 1 000..9 000, b down 3 000..7 000: a's gap contains b's whole window, b's
    coverage splits a's gap to exactly b's window; the two must not both go to REST."""
    r, ledger, store = env
    cover(r, "feeder-a", T - 5_000, T + 1_000)
    cover(r, "feeder-a", T + 9_000, T + 20_000)
    cover(r, "feeder-b", T - 5_000, T + 3_000)
    cover(r, "feeder-b", T + 7_000, T + 20_000)
    gap_a = feeder_gap(r, T + 1_000, T + 9_000, feeder="feeder-a")
    gap_b = feeder_gap(r, T + 3_000, T + 7_000, feeder="feeder-b")
    sent = []
    source = CountingSource()
    first = repairer(ledger, store, source, T + 99_999, on_new_gap=sent.append).run(gap_b)
    second = repairer(ledger, store, source, T + 99_999, on_new_gap=sent.append).run(gap_a)
    assert first.status == "filled"  # b's window: nobody covered it, REST for it
    assert second.status == "covered" and sent == []  # a's rest is b's window: not twice
    assert "already gap" in ledger.get(gap_a)["reason"]
    assert len(source.steps) == 1


def test_split_part_first_then_the_whole_gap_is_the_duplicate(env):
    r, ledger, store = env
    cover(r, "feeder-a", T - 5_000, T + 1_000)
    cover(r, "feeder-a", T + 9_000, T + 20_000)
    cover(r, "feeder-b", T - 5_000, T + 3_000)
    cover(r, "feeder-b", T + 7_000, T + 20_000)
    gap_a = feeder_gap(r, T + 1_000, T + 9_000, feeder="feeder-a")
    gap_b = feeder_gap(r, T + 3_000, T + 7_000, feeder="feeder-b")
    sent = []
    source = CountingSource()
    assert repairer(ledger, store, source, T + 99_999, on_new_gap=sent.append).run(gap_a).status
    (part,) = sent
    p = ledger.get(part)
    assert (int(p["start_ms"]) - T, int(p["end_ms"]) - T) == (3_000, 7_000)
    res = repairer(ledger, store, source, T + 99_999, on_new_gap=sent.append).run(gap_b)
    assert res.status == "covered" and f"already gap {gap_a}/0" in ledger.get(gap_b)["reason"]
    assert source.steps == []  # only the part is left to repair, once
    # the part itself repairs normally (it was registered when split)
    assert repairer(ledger, store, source, T + 99_999).run(part).status == "filled"
    assert len(source.steps) == 1
    # a gap registered once (an attempt that failed) is not its own duplicate when retried
    again = feeder_gap(r, T + 30_000, T + 40_000)
    assert ledger.register_uncovered("s1", *STREAM, T + 30_000, T + 40_000, again, T) == ""
    assert repairer(ledger, store, source, T + 99_999).run(again).status == "filled"


def test_one_feeders_nested_gaps_are_each_repaired_never_covered_by_each_other(env):
    """A seqId break inside a reconnect's window, both recorded by the one feeder of a shard:
    nobody else has that data, so neither gap may close as `covered` (each goes to REST)."""
    r, ledger, store = env
    outer = feeder_gap(r, T + 1_000, T + 9_000, feeder="feeder-a")
    inner = feeder_gap(r, T + 3_000, T + 7_000, feeder="feeder-a")
    source = CountingSource()
    assert repairer(ledger, store, source, T + 99_999).run(outer).status == "filled"
    assert repairer(ledger, store, source, T + 99_999).run(inner).status == "filled"
    assert ledger.get(inner)["status"] == "filled" and len(source.steps) == 2
