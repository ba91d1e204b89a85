"""The history path without a worker: breaker, parking lot, overflow gaps, drain, state failures.

fakeredis (with Lua) for the broker and state Redis, mongomock for MongoDB, and Flaky wrappers
that raise pymongo's and redis-py's real exceptions. Clocks are injected, never slept on.
"""

from __future__ import annotations

import logging
import time

import fakeredis
import mongomock
import pytest
import redis.exceptions
from pymongo.errors import NetworkTimeout, ServerSelectionTimeoutError

from core import keys
from core.contract import INGEST_TASKS
from core.gaps import Gap
from core.settings import WorkerSettings as Settings
from tasks.backfill.plan import plan_gap
from tasks.deadletters import DeadLetters
from tasks.derive.dirty import mark_stored, parse_member
from tasks.history import overflow
from tasks.history.breaker import CLOSED, HALF_OPEN, OPEN, Breaker, describe
from tasks.history.drain import drain
from tasks.history.path import HistoryPath, _Skip, mongo_down
from tasks.history.pending import Pending, decode, encode, merge
from tasks.ingest import handle_batch, summary
from tasks.writers import Store
from tests.workers_fixtures import Flaky, batch, book, order, ticker, trade

S = Settings(
    retry_max=3,
    retry_base_s=1.0,
    retry_cap_s=8.0,
    history_breaker_open_s=2.0,
    history_drain_lease_s=30.0,
    history_breaker_cache_s=0.25,
    books_sample_ms=0,
)


class Clock:
    def __init__(self) -> None:
        self.ms = 1_700_000_000_000
        self.mono = 1000.0

    def advance(self, s: float) -> None:
        self.ms += int(s * 1000)
        self.mono += s


@pytest.fixture
def r():
    return fakeredis.FakeRedis()


@pytest.fixture
def clock():
    return Clock()


def breaker(r, clock, settings=S):
    return Breaker(r, settings, clock_ms=lambda: clock.ms, monotonic=lambda: clock.mono)


# ----- the breaker ---------------------------------------------------------------------------------


def test_breaker_opens_on_failure_probes_once_and_closes(r, clock):
    a, b = breaker(r, clock), breaker(r, clock)  # two worker processes
    assert a.check().state == CLOSED and a.check().kick is None
    assert a.failure("ServerSelectionTimeoutError") is True
    assert a.check().state == OPEN  # its own failure: parks at once, no cache wait
    clock.advance(0.3)
    first = b.check()
    assert first.state == OPEN and first.kick is None  # not yet HISTORY_BREAKER_OPEN_S
    clock.advance(2.0)
    probe = b.check()
    assert probe.state == HALF_OPEN and probe.kick  # one process gets the probe ...
    clock.advance(0.3)
    assert a.check().kick is None and a.check().state == HALF_OPEN  # ... nobody else
    assert not a.claim("someone-else") and b.claim(probe.kick)
    assert b.close() == HALF_OPEN
    clock.advance(0.3)
    assert a.check().state == CLOSED and a.read()["failures"] == "0"


def test_a_failed_probe_opens_again_and_a_lost_probe_is_handed_out_again(r, clock):
    a = breaker(r, clock)
    a.failure("down")
    clock.advance(2.1)
    probe = a.check()
    assert probe.kick and a.claim(probe.kick)
    assert a.failure("probe: down") is True  # half_open -> open, from now
    a.release(probe.kick)
    clock.advance(1.0)
    assert a.check().state == OPEN and a.check().kick is None
    clock.advance(1.5)
    lost = a.check()
    assert lost.kick  # the next probe; its drain task is then lost ...
    clock.advance(10)
    assert a.check().kick is None  # ... its lease (30 s) still runs
    clock.advance(21)
    assert a.check().kick  # lease over: handed out again


def test_threshold_counts_consecutive_failures_and_a_success_forgets_them(r, clock):
    a = breaker(r, clock, Settings(history_breaker_failures=3, history_breaker_cache_s=0.25))
    assert a.failure("x") is False and a.failure("x") is False
    clock.advance(1)
    assert a.check().failures == 2
    a.success()
    clock.advance(1)
    assert a.check().failures == 0 and a.failure("x") is False


def test_the_breaker_is_read_at_most_once_per_cache_period(r, clock):
    a = breaker(r, clock)
    assert a.check().state == CLOSED
    breaker(r, clock).failure("another process saw MongoDB down")
    assert a.check().state == CLOSED  # cached: no round trip on the hot path
    clock.advance(0.26)
    assert a.check().state == OPEN


def test_closed_with_pending_history_sends_a_drain(r, clock):
    Pending(r, 10_000).park([("trades", [trade(1)])])
    a = breaker(r, clock)
    reading = a.check()
    assert reading.state == CLOSED and reading.pending_bytes > 0 and reading.kick


def test_describe_reads_the_stored_hash():
    d = describe({"state": "open", "failures": "2", "changed_ms": "1000", "reason": "x"}, 55, 3000)
    assert d == {"state": "open", "failures": 2, "reason": "x", "since_s": 2.0, "pending_bytes": 55}
    assert describe({}, 0, 5)["state"] == CLOSED


# ----- the parking lot -----------------------------------------------------------------------------


def test_park_counts_bytes_and_evicts_the_oldest_down_to_three_quarters(r):
    entries = [[("trades", [trade(i)])] for i in range(1, 41)]
    size = len(encode(entries[0], 0))
    p = Pending(r, size * 10)
    evicted: list[bytes] = []
    for e in entries:
        evicted += p.park(e)
    assert p.size() == sum(len(x) for x in r.lrange(keys.HISTORY_PENDING, 0, -1))
    assert p.size() <= size * 10 + 50
    kept = [decode(x)["parts"][0][1][0]["tradeId"] for x in r.lrange(keys.HISTORY_PENDING, 0, -1)]
    gone = [decode(x)["parts"][0][1][0]["tradeId"] for x in evicted]
    assert sorted(int(t) for t in kept + gone) == list(range(1, 41))  # nothing vanished
    assert max(int(t) for t in gone) < min(int(t) for t in kept)  # the oldest went


def test_take_done_and_a_lost_drain_chunk_comes_back(r):
    p = Pending(r, 10**6)
    for i in range(5):
        p.park([("trades", [trade(i + 1)])])
    chunk = p.take(1)  # at least one entry
    assert len(chunk) == 1 and p.entries() == 5
    assert p.take(10**6) == chunk  # a drain that died: the next one gets the same chunk first
    assert p.done([b"not the chunk"]) == 0 and p.entries() == 5
    assert p.done(chunk) == len(chunk[0]) and p.entries() == 4
    rest = p.take(10**6)
    assert [t["tradeId"] for _k, recs in merge(rest) for t in recs] == ["2", "3", "4", "5"]
    p.done(rest)
    assert p.size() == 0 and p.entries() == 0


# ----- overflow: gaps ------------------------------------------------------------------------------


def test_overflow_windows_bound_the_dropped_records():
    gaps = overflow.windows(
        [
            ("trades", [trade(7, ts=1_700_000_000_500), trade(9, ts=1_700_000_000_900)]),
            ("trades", [trade(8, inst="ETH-USDT", ts=1_700_000_000_600)]),
            ("books", [book(ts=1_700_000_000_100)]),
            ("tickers", [ticker(ts=1_700_000_000_200)]),
            ("orders", [order(u_time=1_700_000_000_300)]),
        ]
    )
    by = {(g.channel, g.instId): g for g in gaps}
    t = by[("trades", "BTC-USDT")]
    assert (t.start_ms, t.end_ms, t.start_id, t.end_id) == (
        1_700_000_000_500, 1_700_000_000_900, "6", "10",
    )  # fmt: skip
    step = plan_gap(t.recorded("1", "x", 1).to_fields()).steps[0]
    assert (step.kind, step.lower_id, step.upper_id) == ("trades", "6", "10")
    assert plan_gap(by[("books5", "BTC-USDT")].recorded("2", "x", 1).to_fields()).unrepairable
    assert plan_gap(by[("tickers", "BTC-USDT")].recorded("3", "x", 1).to_fields()).unrepairable
    assert by[("orders", "SWAP")].cause == "history_overflow"
    assert plan_gap(by[("orders", "SWAP")].recorded("4", "x", 1).to_fields()).steps


def test_overflow_record_writes_the_ledger_and_asks_for_repairs(r):
    sent = []
    stored = overflow.record(
        r, [encode([("trades", [trade(3), trade(4)])])], now_ms=5, send_repair=sent.append
    )
    assert len(stored) == 1 and sent == [stored[0].id]
    g = Gap.from_fields(r.hgetall(keys.gap_key(stored[0].id)))
    assert g.cause == "history_overflow" and g.status == "open" and (g.start_id, g.end_id) == (
        "2", "5",
    )  # fmt: skip
    assert r.zscore(keys.GAPS_OPEN, stored[0].id) is not None


# ----- one batch: state first, history inline or parked --------------------------------------------


class World:
    """Broker + state Redis, MongoDB that can be down, and the path the ingest task uses."""

    def __init__(self, clock: Clock, settings: Settings = S, error: Exception | None = None):
        self.clock, self.s = clock, settings
        self.broker = fakeredis.FakeRedis()
        self.state_r = fakeredis.FakeRedis()
        self.mongo = mongomock.MongoClient()["okex"]
        self.up = [True]
        self.db = Flaky(
            self.mongo, [error or ServerSelectionTimeoutError("No servers found")],
            until=lambda: self.up[0],
        )  # fmt: skip
        self.breaker = breaker(self.broker, clock, settings)
        self.pending = Pending(self.broker, settings.history_pending_max_bytes)
        self.drains: list[str] = []
        self.opened: list[tuple[str, float]] = []  # drains sent when a batch opened the breaker
        self.skip = _Skip()

    def path(self, state_client=None) -> HistoryPath:
        store = Store(self.db, state_client or self.state_r, self.s)
        return HistoryPath(
            state=store.state,
            db=lambda: self.db,
            breaker=self.breaker,
            pending=self.pending,
            settings=self.s,
            send_drain=lambda token, countdown=0.0: (
                self.opened.append((token, countdown)) if countdown else self.drains.append(token)
            ),
            ledger=self.broker,
            monotonic=lambda: self.clock.mono,
            skip=self.skip,
        )

    def ingest(self, kind, payload, state_client=None, retries=0):
        return handle_batch(
            kind,
            payload,
            store=Store(self.db, state_client or self.state_r, self.s),
            dead=DeadLetters(self.db, self.broker),
            settings=self.s,
            task_name=INGEST_TASKS[kind],
            task_id=f"t{payload['batch']}",
            retries=retries,
            history=self.path(state_client),
        )

    def drain(self, token=None):
        token = token or (self.opened[0][0] if self.opened else "tok")
        return drain(
            breaker=self.breaker, pending=self.pending, db=lambda: self.db, settings=self.s,
            token=token, monotonic=lambda: self.clock.mono,
            on_stored=lambda parts: mark_stored(self.state_r, parts),
        )  # fmt: skip

    def dirty_minutes(self) -> set[tuple[str, int]]:
        return {parse_member(m) for m in self.state_r.zrange(keys.DERIVE_DIRTY, 0, -1)}

    def trade_ids(self) -> list[str]:
        return sorted(d["tradeId"] for d in self.mongo["trades"].find())


def test_mongodb_down_parks_history_keeps_state_and_never_retries(clock):
    w = World(clock)
    out = w.ingest("trades", batch("trades", [trade(1), trade(2)]))
    assert out.retry_in is None and out.dead_letter is None and w.trade_ids() == ["1", "2"]
    w.up[0] = False
    raised_before = w.db.raised
    out = w.ingest("tickers", batch("tickers", [ticker(ts=1_700_000_000_100)]))
    assert out.retry_in is None and out.written["parked"] == 1 and out.written["state_applied"] == 1
    assert w.db.raised == raised_before + 1 and w.breaker.read()["state"] == OPEN
    for i in range(3, 13):  # breaker open: MongoDB is not even tried
        out = w.ingest("trades", batch("trades", [trade(i)]))
        assert out.retry_in is None and out.written["parked"] == 1
        assert w.state_r.zcard(keys.trades("BTC-USDT")) == i  # state current, batch by batch
    assert w.db.raised == raised_before + 1
    assert "1 parked" in summary(out)


def test_drain_while_down_keeps_everything_and_after_recovery_writes_it_once(clock):
    w = World(clock)
    w.up[0] = False
    for i in range(1, 21):
        w.ingest("trades", batch("trades", [trade(i)]))
        clock.advance(0.05)
    clock.advance(2.1)
    w.ingest("trades", batch("trades", [trade(21)]))
    # the batch that opened the breaker sent the one drain (its probe due in open_s); no check
    # hands out another while its lease runs
    assert [c for _t, c in w.opened] == [S.history_breaker_open_s] and w.drains == []
    res = w.drain()
    assert res.state == OPEN and res.records == 0 and "probe failed" in res.error
    assert w.pending.entries() == 21 and w.trade_ids() == []
    w.up[0] = True
    w.ingest("trades", batch("trades", [trade(5)]))  # a redelivered trade, parked again
    res = w.drain("tok2")
    # the redelivered trade is one _id twice in the chunk: stored once
    assert res.state == CLOSED and res.records == 22 and res.inserted == 21
    assert w.pending.size() == 0
    assert w.trade_ids() == sorted(str(i) for i in range(1, 22))
    assert "breaker closed" in res.summary() and "pending 0 B" in res.summary()
    clock.advance(0.3)
    out = w.ingest("trades", batch("trades", [trade(22)]))
    assert out.written["inserted"] == 1 and not out.written.get("parked")


def test_trades_are_marked_for_the_candle_rebuild_only_once_mongodb_holds_them(clock):
    # Given trades stored inline, then trades parked while MongoDB is down
    w = World(clock)
    minute = 60_000
    w.ingest("trades", batch("trades", [trade(1, ts=1_700_000_040_000)]))
    stored_first = {("BTC-USDT", 1_700_000_040_000 // minute * minute)}
    assert w.dirty_minutes() == stored_first  # inline: stored, so marked
    w.up[0] = False
    later = 1_700_000_040_000 + 5 * minute
    w.ingest("trades", batch("trades", [trade(2, ts=later)]))
    w.ingest("trades", batch("trades", [trade(3, ts=later + 1)]))
    # Then parked trades are not marked yet (a rebuild now would miss them and clear the mark)
    assert w.dirty_minutes() == stored_first and w.pending.entries() == 2
    w.state_r.delete(keys.DERIVE_DIRTY)  # a rebuild ran meanwhile
    # When MongoDB is back and the drain stores them
    w.up[0] = True
    clock.advance(2.1)
    assert w.drain().records == 2 and w.trade_ids() == ["1", "2", "3"]
    # Then their minute is marked, once they are in MongoDB
    assert w.dirty_minutes() == {("BTC-USDT", later // minute * minute)}


def test_a_hung_mongodb_times_out_once_then_parks(clock):
    w = World(clock, error=NetworkTimeout("timed out"))
    w.up[0] = False
    assert mongo_down(NetworkTimeout("x")) and not mongo_down(ValueError("x"))
    out = w.ingest("books", batch("books", [book()]))
    assert out.retry_in is None and out.written["parked"] == 1 and w.db.raised == 1


def test_a_slow_mongodb_opens_the_breaker_but_the_drain_still_writes(clock):
    s = Settings(history_slow_ms=20.0, books_sample_ms=0, history_breaker_cache_s=0.25)
    w = World(clock, s)

    class Slow:
        def __init__(self, db):
            self.db = db

        def __getitem__(self, name):
            coll = self.db[name]

            class C:
                def insert_many(self, docs, ordered=False):
                    time.sleep(0.03)  # the slow server: every reply 30 ms late
                    return coll.insert_many(docs, ordered=ordered)

            return C()

        def command(self, *a):
            time.sleep(0.03)
            return {"ok": 1}

    w.db = Slow(w.mongo)
    for i in (1, 2):  # slow, but written: one slow write under load is no outage
        out = w.ingest("trades", batch("trades", [trade(i)]))
        assert out.written["inserted"] == 1 and w.breaker.read().get("state", CLOSED) == CLOSED
    out = w.ingest("trades", batch("trades", [trade(3)]))
    assert out.written["inserted"] == 1 and w.breaker.read()["state"] == OPEN  # third in a row
    w.ingest("trades", batch("trades", [trade(4)]))
    assert w.pending.entries() == 1
    res = w.drain()
    assert res.state == OPEN and res.records == 1 and w.trade_ids() == ["1", "2", "3", "4"]


def test_a_fast_write_between_slow_ones_starts_the_count_again(clock):
    s = Settings(history_slow_ms=20.0, books_sample_ms=0, history_breaker_cache_s=0.0)
    w = World(clock, s)
    b = w.breaker
    assert not b.failure("slow", slow=True) and not b.failure("slow", slow=True)
    b.check()
    b.success()  # a fast write
    assert not b.failure("slow", slow=True) and not b.failure("slow", slow=True)
    assert b.failure("slow", slow=True)


def test_overflow_during_an_outage_records_gaps_for_exactly_what_it_dropped(clock):
    s = Settings(history_pending_max_bytes=3000, books_sample_ms=0)
    w = World(clock, s)
    w.up[0] = False
    for i in range(1, 101):
        w.ingest("trades", batch("trades", [trade(i)]))
    ids = [g.decode() for g in w.broker.zrange(keys.GAPS_OPEN, 0, -1)]
    gaps = [Gap.from_fields(w.broker.hgetall(keys.gap_key(g))) for g in ids]
    assert gaps and all(g.cause == "history_overflow" for g in gaps)
    assert w.pending.size() <= 3000
    w.up[0] = True
    w.drain()
    stored = {int(t) for t in w.trade_ids()}
    dropped = {i for g in gaps for i in range(int(g.start_id) + 1, int(g.end_id))}
    assert stored | dropped == set(range(1, 101)) and not stored & dropped


def test_state_redis_down_never_blocks_history_and_recovers(clock):
    w = World(clock)
    calls = []

    class DownRedis:
        def pipeline(self, *a, **kw):
            calls.append(1)
            raise redis.exceptions.ConnectionError("Connection refused")

        def register_script(self, s):
            return None

        def zadd(self, *a, **kw):  # the rebuild marks: never tried while state is skipped
            calls.append("zadd")
            raise redis.exceptions.ConnectionError("Connection refused")

    down = DownRedis()
    out = w.ingest("tickers", batch("tickers", [ticker()]), state_client=down)
    assert out.retry_in is None and out.written["inserted"] == 1 and calls == [1]
    out = w.ingest("trades", batch("trades", [trade(1)]), state_client=down)
    assert out.written["inserted"] == 1 and calls == [1]  # skipped: no wait on a dead Redis
    out = w.ingest("orders", batch("orders", [order()]), state_client=down)
    assert out.retry_in is not None  # account state must not be lost: retried ...
    assert w.mongo["order"].count_documents({}) == 1  # ... with its history already stored
    clock.advance(S.state_skip_s + 0.01)
    out = w.ingest("tickers", batch("tickers", [ticker(ts=1_700_000_000_500)]))
    assert out.written["state_applied"] == 1  # Redis back: state current with the next batch


def test_without_a_breaker_history_failures_retry_as_before(clock):
    w = World(clock)
    w.up[0] = False
    path = w.path()
    path.breaker = path.pending = None
    out = handle_batch(
        "trades", batch("trades", [trade(1)]), store=Store(w.db, w.state_r, S),
        dead=DeadLetters(w.db, w.broker), settings=S, task_name=INGEST_TASKS["trades"],
        task_id="x", retries=0, history=path,
    )  # fmt: skip
    assert out.retry_in is not None


# ----- the dead-letter spool's bound ---------------------------------------------------------------


def test_dead_letter_spool_is_bounded_in_bytes_counted_and_logged(caplog):
    from tasks.deadletters import SPOOL_DROPPED, make_doc

    r = fakeredis.FakeRedis()
    db = Flaky(mongomock.MongoClient()["okex"], [ServerSelectionTimeoutError("down")])
    dead = DeadLetters(db, r, spool_max_bytes=4000)
    before = SPOOL_DROPPED._value.get()
    with caplog.at_level(logging.ERROR):
        for i in range(20):
            doc = make_doc(task="tasks.ingest.trades", task_id=f"id{i}",
                           args=[batch("trades", [trade(i + 1)])], reason="error",
                           exc=None, retries=0)  # fmt: skip
            assert dead.put(doc) == "spool"
    held = r.lrange(keys.DEADLETTER_SPOOL, 0, -1)
    assert int(r.get(keys.DEADLETTER_SPOOL_BYTES)) == sum(len(x) for x in held) <= 4000
    dropped = SPOOL_DROPPED._value.get() - before
    assert dropped == 20 - len(held) > 0
    assert "dropped the oldest, _id=id0" in caplog.text
    db._state["left"] = 0  # MongoDB back
    assert dead.drain() == len(held) and int(r.get(keys.DEADLETTER_SPOOL_BYTES)) == 0


def test_the_drain_chain_keeps_its_lease_until_the_backlog_is_gone(clock):
    w = World(clock)
    w.up[0] = False
    w.ingest("trades", batch("trades", [trade(1)]))
    sent: list[tuple[str, float]] = []

    def run(token):
        return drain(
            breaker=w.breaker, pending=w.pending, db=lambda: w.db, settings=S, token=token,
            follow_up=lambda t, wait: sent.append((t, wait)), monotonic=lambda: clock.mono,
        )  # fmt: skip

    chain = w.opened[0][0]  # the drain the failing batch sent
    res = run(chain)
    assert res.state == OPEN and sent == [(chain, S.history_breaker_open_s)]
    assert "next drain in 2 s" in res.summary()
    clock.advance(2.5)
    assert w.breaker.check().kick is None  # the chain holds the probe: nobody else is sent
    assert not w.breaker.claim("another")
    w.up[0] = True
    res = run(chain)  # the follow-up, same token
    assert res.state == CLOSED and res.records == 1 and len(sent) == 1  # done: no follow-up
    assert w.breaker.claim("another")  # lease given back


def test_parked_books_are_sampled_as_mongodb_would_keep_them(clock):
    from tasks.history import path as path_mod

    path_mod._PARKED_WINDOWS.clear()
    s = Settings(books_sample_ms=1000, history_breaker_cache_s=0.25)
    w = World(clock, s)
    w.up[0] = False
    t = 1_700_000_001_000
    pushes = [book(ts=t + i * 100, seq=i) for i in range(25)]  # 2.5 windows of 100 ms pushes
    for i in range(0, 25, 5):
        w.ingest("books", batch("books", pushes[i : i + 5]))
    w.ingest("books", batch("books", [book(ts=t + 50, seq=99, full=True)]))
    parked = [r for _k, recs in merge(w.broker.lrange(keys.HISTORY_PENDING, 0, -1)) for r in recs]
    assert [(r["ts"], r["full"]) for r in parked] == [
        (str(t), False), (str(t + 1000), False), (str(t + 2000), False), (str(t + 50), True),
    ]  # fmt: skip
    w.up[0] = True
    w.drain()
    inline = mongomock.MongoClient()["okex"]  # the same pushes written inline, for comparison
    for i in range(0, 25, 5):
        Store(inline, fakeredis.FakeRedis(), s).write("books", pushes[i : i + 5])
    Store(inline, fakeredis.FakeRedis(), s).write("books", [book(ts=t + 50, seq=99, full=True)])
    ids = sorted(d["_id"] for d in w.mongo["books"].find())
    assert ids == sorted(d["_id"] for d in inline["books"].find()) and len(ids) == 4


def test_the_breaker_closes_only_once_mongodb_caught_up(clock):
    s = Settings(history_drain_chunk_bytes=1, books_sample_ms=0, history_drain_budget_s=1.0)
    w = World(clock, s)
    w.up[0] = False
    for i in range(1, 6):
        w.ingest("trades", batch("trades", [trade(i)]))
    w.up[0] = True
    ticks = iter(range(10**6))
    sent: list[tuple[str, float]] = []
    res = drain(
        breaker=w.breaker, pending=w.pending, db=lambda: w.db, settings=s, token=w.opened[0][0],
        follow_up=lambda t, wait: sent.append((t, wait)),
        monotonic=lambda: clock.mono + 0.4 * next(ticks),  # the budget runs out after 2 chunks
    )  # fmt: skip
    assert res.chunks == 2 and res.pending_bytes > 0
    assert res.state == HALF_OPEN and sent == [(w.opened[0][0], 0.0)]  # goes on at once
    assert w.breaker.read()["state"] == HALF_OPEN  # ingest keeps parking meanwhile
    res = w.drain()
    assert res.state == CLOSED and w.trade_ids() == ["1", "2", "3", "4", "5"]
