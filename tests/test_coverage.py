"""Coverage: the interval arithmetic (core/intervals.py), the feeder's tracker
(collector/coverage.py) and what the ledger writes (core/coverage.py)."""

from __future__ import annotations

import fakeredis
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.coverage import CoverageTracker
from collector.ledger import Ledger
from core import coverage as coverage_store
from core import keys
from core.gaps import Gap
from core.intervals import contributors, covers, merge_open, uncovered

KEY = ("books5", "BTC-USDT")

# ----- intervals ---------------------------------------------------------------------------------


def test_uncovered_examples():
    assert uncovered((10, 20), [(5, 25)]) == []
    assert uncovered((10, 20), [(10, 20)]) == [(10, 10), (20, 20)]  # open ends: 10, 20 unknown
    assert uncovered((10, 20), [(5, 15)]) == [(15, 20)]
    assert uncovered((10, 20), [(5, 12), (14, 25)]) == [(12, 14)]
    assert uncovered((10, 20), [(5, 12), (12, 25)]) == [(12, 12)]  # touching: 12 in neither
    assert uncovered((10, 20), []) == [(10, 20)]
    assert uncovered((20, 10), [(0, 99)]) == [(20, 10)]  # not a time window: never covered
    assert merge_open([(1, 5), (3, 9), (9, 12), (20, 20)]) == [(1, 9), (9, 12)]
    assert covers((10, 20), [(0, 15), (14, 30)])
    assert contributors((10, 20), {"a": [(0, 11)], "b": [(20, 30)], "c": [(19, 40)]}) == ["a", "c"]


intervals = st.lists(
    st.tuples(st.integers(0, 60), st.integers(0, 60)).map(lambda t: (min(t), max(t))), max_size=6
)


@settings(max_examples=400, deadline=None)
@given(st.integers(0, 60), st.integers(0, 60), intervals)
def test_uncovered_is_exactly_the_points_no_interval_holds(s, e, cov):
    s, e = min(s, e), max(s, e)
    pieces = uncovered((s, e), cov)
    in_pieces = {x for a, b in pieces for x in range(a, b + 1)}
    # integer and half-millisecond points: open intervals make both matter
    for x2 in range(2 * s, 2 * e + 1):
        x = x2 / 2
        held = any(a < x < b for a, b in cov)
        in_piece = any(a <= x <= b for a, b in pieces)
        assert held != in_piece, (x, pieces)
    assert all(s <= a <= b <= e for a, b in pieces)
    assert all(p[1] < q[0] or p[1] == q[0] == p[1] for p, q in zip(pieces, pieces[1:]))
    assert in_pieces <= set(range(s, e + 1))
    assert covers((s, e), cov) == (pieces == [])


# ----- the tracker --------------------------------------------------------------------------------


def intervals_of(tracker, changes=None):
    """The tracker's intervals as the Redis zset would hold them (start -> last end written)."""
    held = {} if changes is None else changes
    for key, start, end in tracker.take():
        held[(key, start)] = end
    return held


def test_tracker_runs_across_marks_and_breaks_at_a_gap():
    t = CoverageTracker(max_silence_ms=10_000)
    held = {}
    t.mark(KEY, 100)
    t.mark(KEY, 200)
    intervals_of(t, held)
    assert held == {(KEY, 100): 200}
    # this cycle: a reconnect 250..400 found, and records up to 500 published
    t.gap(KEY, 250, 400, 500)
    t.mark(KEY, 500)
    intervals_of(t, held)
    assert held == {(KEY, 100): 250, (KEY, 400): 500}


def test_a_stalled_feeder_covers_nothing_and_a_long_silence_ends_the_interval():
    t = CoverageTracker(max_silence_ms=1_000)
    held = {}
    t.mark(KEY, 100)
    for _ in range(5):
        t.mark(KEY, 100)  # connected, nothing new published
    intervals_of(t, held)
    assert held == {(KEY, 100): 100}
    t.mark(KEY, 5_000)  # 4.9 s without a record: not vouched for
    intervals_of(t, held)
    assert held == {(KEY, 100): 100, (KEY, 5_000): 5_000}


def test_two_gaps_in_one_cycle_keep_the_stretch_between_them():
    t = CoverageTracker(max_silence_ms=10_000)
    held = {}
    t.mark(KEY, 100)
    t.gap(KEY, 150, 200, 900)
    t.gap(KEY, 300, 400, 900)
    t.mark(KEY, 900)
    intervals_of(t, held)
    assert held == {(KEY, 100): 150, (KEY, 200): 300, (KEY, 400): 900}


def test_records_before_the_gap_end_are_not_claimed_after_it():
    t = CoverageTracker(max_silence_ms=10_000)
    held = {}
    t.mark(KEY, 100)
    t.gap(KEY, 120, 300, 110)  # the gap is known, what follows it not yet published
    t.mark(KEY, 110)
    t.mark(KEY, 250)  # cannot happen in order, and must not open an interval inside the gap
    t.mark(KEY, 320)
    intervals_of(t, held)
    assert held == {(KEY, 100): 110, (KEY, 300): 320}


@st.composite
def feeds(draw):
    """A stream with records at some ms of 0..200, some windows lost (gaps), and the ledger's
    cycles at random points."""
    times = sorted(draw(st.sets(st.integers(0, 200), min_size=2, max_size=60)))
    lost = draw(st.lists(st.integers(1, len(times) - 1), unique=True, max_size=5))
    cycles = sorted(draw(st.sets(st.integers(0, 200), max_size=10)) | {200})
    return times, sorted(lost), cycles


@settings(max_examples=300, deadline=None)
@given(feeds(), st.integers(1, 80))
def test_tracker_never_claims_a_lost_window(feed, silence):
    times, lost, cycles = feed
    # a gap before times[i]: the record at times[i-1] was the last before it
    gap_at = {i: (times[i - 1], times[i]) for i in lost}
    t = CoverageTracker(max_silence_ms=silence)
    held: dict = {}
    published = -1
    gaps_found: list = []
    seen: list[int] = []  # the marks the tracker was shown
    i = 0
    for cycle_end in cycles:
        while i < len(times) and times[i] <= cycle_end:
            if i in gap_at:
                gaps_found.append(gap_at[i])
            published = times[i]
            i += 1
        for s, e in gaps_found:
            t.gap(KEY, s, e, published)
        gaps_found = []
        if published >= 0:
            t.mark(KEY, published)
            seen.append(published)
        intervals_of(t, held)
    claimed = [(s, e) for (_k, s), e in held.items()]
    for s, e in gap_at.values():
        # no point strictly inside a lost window lies inside any claimed (open) interval
        assert not covers((s, e), claimed)
        assert not any(a < (s + e) / 2 < b for a, b in claimed if s < e)
    # and with no gap and no long silence between marks, all between the first and the last
    # mark is covered
    if not lost and seen and all(b - a <= silence for a, b in zip(seen, seen[1:])):
        if seen[-1] - seen[0] >= 2:
            assert covers((seen[0] + 1, seen[-1] - 1), claimed)


# ----- the ledger writes it -----------------------------------------------------------------------


def test_ledger_writes_coverage_and_tags_its_gaps_with_the_shard():
    server = fakeredis.FakeServer()
    state = {"marks": {KEY: (1_000, "1", 9)}, "gaps": []}

    def pull(led):
        if state["gaps"]:
            led.add_gaps(state["gaps"])
            state["gaps"] = []
        led.marks = dict(state["marks"])

    led = Ledger(
        "redis://unused:1/0",
        "feeder-a",
        [KEY],
        shard="s1",
        pull=pull,
        on_gap_id=lambda gid: None,
        status=lambda: {},
    )
    led.client = fakeredis.FakeRedis(server=server)
    led._advance = led.client.register_script(led._advance.script)
    led.cycle()
    state["marks"] = {KEY: (2_000, "2", 9)}
    led.cycle()
    state["gaps"] = [Gap(*KEY, 2_500, 3_000, "reconnect")]
    state["marks"] = {KEY: (4_000, "4", 9)}
    led.cycle()
    r = fakeredis.FakeRedis(server=server, decode_responses=True)
    got = coverage_store.read(r, "s1", *KEY, 0, 10_000)
    # published up to 4 000 when the gap from 2 500 was found: the first interval ends there
    assert got == {"feeder-a": [(1_000, 2_500), (3_000, 4_000)]}
    assert 0 < r.pttl(keys.coverage_key("s1", *KEY)) <= keys.COVERAGE_KEEP_MS
    assert r.hget(keys.gap_key("1"), "shard") == "s1"


def test_coverage_member_round_trip_and_garbage():
    assert coverage_store.parse_member(coverage_store.member("feeder-a", 12)) == ("feeder-a", 12)
    assert coverage_store.parse_member(b"x|y") is None
    assert coverage_store.parse_member("nobar") is None


def test_the_first_interval_starts_at_the_runs_first_record_not_the_first_mark():
    t = CoverageTracker(max_silence_ms=10_000)
    held = {}
    t.started(KEY, 1_000)  # the first record of this run
    t.mark(KEY, 1_800)  # the first cycle's last published record
    intervals_of(t, held)
    assert held == {(KEY, 1_000): 1_800}
    t.started(KEY, 5_000)  # reported again: ignored while an interval runs
    t.mark(KEY, 1_900)
    intervals_of(t, held)
    assert held == {(KEY, 1_000): 1_900}
