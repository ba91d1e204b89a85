"""The duplicate check of redundant feeders' copies, without a worker: fakeredis (with Lua) for
the state and broker Redis, mongomock for MongoDB, the real history path (breaker, parking), and
a counting wrapper round the writers, so "dropped" means "never reached a writer".
"""

from __future__ import annotations

import random

import fakeredis
import mongomock
import pytest
import redis.exceptions
from hypothesis import given, settings
from hypothesis import strategies as st
from pymongo.errors import AutoReconnect, ServerSelectionTimeoutError

from core import keys
from core.contract import INGEST_TASKS, make_batch
from core.identity import identity
from core.settings import WorkerSettings as Settings
from tasks import documents
from tasks.deadletters import DeadLetters
from tasks.history.breaker import Breaker
from tasks.history.path import HistoryPath
from tasks.history.path import _Skip as StateSkip
from tasks.history.pending import Pending
from tasks.ingest import Outcome, handle_batch, summary
from tasks.ingest_dedupe import DROPPED
from tasks.writers import Store
from tasks.writers.seen import Seen, _Skip
from tests.workers_fixtures import T0, Flaky, book, candle, order, ticker, trade

S = Settings(retry_max=3, retry_base_s=1.0, retry_cap_s=8.0, books_sample_ms=0, dedupe_ttl_s=30)


def envelope(kind: str, records: list[dict], producer: str, no: int) -> dict:
    env = make_batch(kind, records, source="ws", producer=producer, batch=no, sent_ms=T0)
    env["shard"] = "s1"
    return env


class World:
    """One deployment's storage and the path the ingest task takes; `written` counts every
    record a writer was handed, by MongoDB `_id`."""

    def __init__(self, mongo_error: Exception | None = None, settings: Settings = S):
        self.s = settings
        self.mono = [1000.0]
        self.broker = fakeredis.FakeRedis()
        self.state_r = fakeredis.FakeRedis()
        self.mongo = mongomock.MongoClient()["okex"]
        self.up = [True]
        self.db = Flaky(
            self.mongo, [mongo_error or AutoReconnect("gone")], until=lambda: self.up[0]
        )
        self.written: dict[str, int] = {}
        self.seen_skip = _Skip()
        self.breaker_on = False

    def seen(self, client=None) -> Seen:
        return Seen(
            client or self.state_r, self.s, monotonic=lambda: self.mono[0], skip=self.seen_skip
        )

    def ingest(self, kind: str, env: dict, *, seen: Seen | None = None, state=None) -> Outcome:
        store = Store(self.db, state or self.state_r, self.s)
        breaker = Breaker(self.broker, self.s, monotonic=lambda: self.mono[0])
        path = HistoryPath(
            state=store.state, db=lambda: self.db, settings=self.s, skip=StateSkip(),
            breaker=breaker if self.breaker_on else None,
            pending=Pending(self.broker, self.s.history_pending_max_bytes) if self.breaker_on else None,
            monotonic=lambda: self.mono[0],
        )  # fmt: skip

        def counting(parts, **kw):
            for k, records in parts:
                for rec in records:
                    _id = f"{k}/{documents.natural_id(k, rec)}"
                    self.written[_id] = self.written.get(_id, 0) + 1
            return path.write_many(parts, **kw)

        return handle_batch(
            kind, env, store=store, dead=DeadLetters(self.db, self.broker), settings=self.s,
            task_name=INGEST_TASKS[kind], task_id=f"t{env['batch']}", retries=0,
            write_many=counting, seen=seen if seen is not None else self.seen(),
        )  # fmt: skip

    def ids(self, collection: str) -> list[str]:
        return sorted(d["_id"] for d in self.mongo[collection].find())


def dropped_total(kind: str) -> float:
    return sum(
        s.value
        for m in DROPPED.collect()
        for s in m.samples
        if s.name.endswith("_total") and s.labels.get("kind") == kind
    )


# ----- identities ------------------------------------------------------------------------------


def test_identity_is_natural_key_plus_state_version():
    assert identity("trades", trade(7)) == ("trades", "BTC-USDT", (T0 + 7) // 1000, "7")
    # a forming candle that grew is another version: never a duplicate of the smaller one
    small, grown = candle(vol="10"), candle(vol="11")
    assert identity("candles", small) != identity("candles", grown)
    assert identity("candles", candle(confirm="0")) != identity("candles", candle(confirm="1"))
    # a full snapshot and the push it was taken at are different documents
    assert identity("books", book(full=True)) != identity("books", book())
    assert identity("books", book(channel="books")) != identity("books", book())
    assert identity("books", book(seq=None, ts=T0)) != identity("books", book(seq=None, ts=T0 + 1))
    ev = order("9", T0, "filled")
    assert identity("orders", ev)[3] == f"9:{T0}:filled"  # the order<N> event key's parts
    assert identity("tickers", ticker(ts=T0))[2] == T0 // 1000
    assert identity("fills", {"billId": "1"}) is None


# ----- two copies ------------------------------------------------------------------------------


def test_two_copies_cut_differently_are_written_once_and_counted():
    w = World()
    records = [trade(i) for i in range(10)]
    before = dropped_total("trades")
    # feeder a: 0-3, 4-9; feeder b: 0-6, 7-9 (its boundaries elsewhere)
    outs = [
        w.ingest("trades", envelope("trades", records[0:4], "a", 1)),
        w.ingest("trades", envelope("trades", records[0:7], "b", 1)),
        w.ingest("trades", envelope("trades", records[4:10], "a", 2)),
        w.ingest("trades", envelope("trades", records[7:10], "b", 2)),
    ]
    assert [o.written.get("dropped", 0) for o in outs] == [0, 4, 3, 3]
    assert set(w.written.values()) == {1} and len(w.written) == 10  # each reached a writer once
    assert len(w.ids("trades")) == 10
    assert dropped_total("trades") - before == 10
    assert "3 dropped" in summary(outs[3])
    assert w.state_r.zcard(keys.trades("BTC-USDT")) == 10


def test_a_record_only_the_second_copy_carries_is_stored():
    w = World()
    w.ingest("tickers", envelope("tickers", [ticker(ts=T0), ticker(ts=T0 + 100)], "a", 1))
    out = w.ingest(
        "tickers", envelope("tickers", [ticker(ts=T0 + 100), ticker(ts=T0 + 200)], "b", 1)
    )
    assert out.written["dropped"] == 1 and out.written["inserted"] == 1
    assert w.ids("tickers") == [f"BTC-USDT:{T0}", f"BTC-USDT:{T0 + 100}", f"BTC-USDT:{T0 + 200}"]
    assert w.state_r.hget(keys.ticker("BTC-USDT"), "ts") == str(T0 + 200).encode()


def test_every_kind_of_the_other_copy_is_dropped_and_order_events_keep_one_number():
    w = World()
    data = {
        "orders": [order("1", T0, "live"), order("1", T0 + 5, "filled")],
        "books": [book(seq=1), book(seq=2, ts=T0 + 100), book(seq=2, ts=T0 + 100, full=True)],
        "candles": [candle(vol="10"), candle(ts=T0 + 60_000, vol="12")],
        "tickers": [ticker()],
        "trades": [trade(1)],
    }
    for no, producer in ((1, "a"), (2, "b")):
        for kind, recs in data.items():
            out = w.ingest(kind, envelope(kind, recs, producer, no))
            assert out.written.get("dropped", 0) == (len(recs) if producer == "b" else 0), kind
    assert set(w.written.values()) == {1}
    assert int(w.state_r.get(keys.ORDER_COUNTER)) == 2 and w.state_r.exists("order2")


def test_a_redelivered_batch_is_dropped_whole():
    w = World()
    env = envelope("trades", [trade(1), trade(2)], "a", 1)
    w.ingest("trades", env)
    out = w.ingest("trades", env)
    assert out.written == {"records": 0, "dropped": 2} and summary(out).startswith("trades 0 rec")


def test_dedupe_off_writes_every_copy():
    w = World(settings=Settings(books_sample_ms=0, dedupe_ttl_s=0))
    env = envelope("trades", [trade(1)], "a", 1)
    w.ingest("trades", env)
    w.ingest("trades", env)
    assert w.written == {"trades/BTC-USDT:1": 2} and not w.state_r.keys(keys.SEEN_PREFIX + "*")


def test_seen_sets_expire_and_hold_only_stored_identities():
    w = World()
    w.ingest("trades", envelope("trades", [trade(1), trade(1500)], "a", 1))
    seen = sorted(w.state_r.keys(keys.SEEN_PREFIX + "*"))
    assert seen == [
        keys.seen("trades", "BTC-USDT", T0 // 1000).encode(),
        keys.seen("trades", "BTC-USDT", (T0 + 1500) // 1000).encode(),
    ]
    assert all(0 < w.state_r.ttl(k) <= S.dedupe_ttl_s for k in seen)


# ----- marked only once stored ---------------------------------------------------------------


def test_a_failed_first_write_leaves_the_second_copy_to_be_stored():
    w = World(ServerSelectionTimeoutError("no primary"))
    w.up[0] = False
    records = [trade(1), trade(2)]
    out = w.ingest("trades", envelope("trades", records, "a", 1))
    assert out.retry_in is not None  # no breaker: a transient error retries the task
    w.up[0] = True
    out = w.ingest("trades", envelope("trades", records, "b", 1))
    assert out.written["inserted"] == 2 and "dropped" not in out.written


def test_parked_history_is_never_marked():
    w = World(ServerSelectionTimeoutError("no primary"))
    w.breaker_on = True
    w.up[0] = False
    out = w.ingest("trades", envelope("trades", [trade(1)], "a", 1))
    assert out.written["parked"] == 1  # acknowledged, its history waits in the parking lot
    assert not w.state_r.keys(keys.SEEN_PREFIX + "*")
    w.up[0], w.breaker_on = True, False  # the other copy, on a worker that writes inline
    out = w.ingest("trades", envelope("trades", [trade(1)], "b", 1))
    assert "dropped" not in out.written and w.ids("trades") == ["BTC-USDT:1"]


class DownRedis:
    def evalsha(self, *a, **kw):
        raise redis.exceptions.ConnectionError("Connection refused")

    def pipeline(self, *a, **kw):
        raise redis.exceptions.ConnectionError("Connection refused")


def test_a_failed_state_write_is_not_marked():
    w = World()
    out = w.ingest("tickers", envelope("tickers", [ticker()], "a", 1), state=DownRedis())
    assert out.written["state_failed"] == 1 and out.written["inserted"] == 1
    assert not w.state_r.keys(keys.SEEN_PREFIX + "*")
    out = w.ingest("tickers", envelope("tickers", [ticker()], "b", 1))
    assert "dropped" not in out.written and out.written["state_applied"] == 1


class FailingMark:
    """The state Redis, except that the marking script fails (its reply lost, or Redis gone)."""

    def __init__(self, client, after: bool):
        self.client, self.after = client, after

    def evalsha(self, sha, *a):
        from tasks.writers.seen import MARK_SHA

        if sha == MARK_SHA:
            if self.after:
                self.client.evalsha(sha, *a)
            raise redis.exceptions.TimeoutError("Timeout reading from socket")
        return self.client.evalsha(sha, *a)

    def __getattr__(self, name):
        return getattr(self.client, name)


def test_a_failing_mark_loses_nothing_and_only_costs_a_rewrite():
    w = World()
    env = envelope("trades", [trade(1), trade(2)], "a", 1)
    out = w.ingest("trades", env, seen=w.seen(FailingMark(w.state_r, after=False)))
    assert out.retry_in is None and out.written["inserted"] == 2  # the batch is done
    w.mono[0] += S.state_skip_s + 0.1
    out = w.ingest("trades", envelope("trades", [trade(1), trade(2)], "b", 1))
    assert "dropped" not in out.written and w.written == {
        "trades/BTC-USDT:1": 2, "trades/BTC-USDT:2": 2,
    }  # fmt: skip
    assert w.ids("trades") == ["BTC-USDT:1", "BTC-USDT:2"]


def test_a_crash_between_the_writes_and_the_mark_rewrites_the_redelivered_batch():
    w = World()
    env = envelope("trades", [trade(1), trade(2)], "a", 1)

    class Crash(BaseException):  # the worker killed right after the writes (SIGKILL)
        pass

    crashing = w.seen()
    crashing.mark = lambda marks: (_ for _ in ()).throw(Crash())  # type: ignore[method-assign]
    with pytest.raises(Crash):
        w.ingest("trades", env, seen=crashing)
    out = w.ingest("trades", env)  # acks_late: the same message again
    assert "dropped" not in out.written and out.written["duplicates"] == 2
    out = w.ingest("trades", envelope("trades", [trade(1), trade(2)], "b", 1))
    assert out.written["dropped"] == 2  # marked by the redelivery
    assert w.ids("trades") == ["BTC-USDT:1", "BTC-USDT:2"]


def test_a_failing_check_writes_everything_and_stays_off_for_a_while():
    w = World()
    w.ingest("trades", envelope("trades", [trade(1)], "a", 1))
    out = w.ingest("trades", envelope("trades", [trade(1)], "b", 1), seen=w.seen(DownRedis()))
    assert "dropped" not in out.written and w.written["trades/BTC-USDT:1"] == 2
    out = w.ingest("trades", envelope("trades", [trade(1)], "b", 2))  # within STATE_SKIP_S
    assert "dropped" not in out.written
    w.mono[0] += S.state_skip_s + 0.1
    out = w.ingest("trades", envelope("trades", [trade(1)], "b", 3))
    assert out.written["dropped"] == 1


def test_bad_records_of_the_second_copy_are_still_dead_lettered():
    w = World()
    w.ingest("trades", envelope("trades", [trade(1)], "a", 1))
    broken = dict(trade(1), ts="yesterday")
    out = w.ingest("trades", envelope("trades", [trade(1), broken], "b", 1))
    assert out.written["dropped"] == 1 and out.dead_letter is not None


# ----- any two cuttings, any interleaving ------------------------------------------------------


def stream(n: int, rng: random.Random) -> list[tuple[str, dict]]:
    out: list[tuple[str, dict]] = []
    for i in range(n):
        inst = rng.choice(["BTC-USDT", "ETH-USDT"])
        what = rng.choice(["trades", "tickers", "books", "orders"])
        ts = T0 + i * 37
        if what == "trades":
            out.append((what, trade(i, inst, ts=ts)))
        elif what == "tickers":
            out.append((what, ticker(inst, ts)))
        elif what == "books":
            out.append((what, book(inst, ts, seq=i, channel=rng.choice(["books5", "books"]))))
        else:
            out.append((what, order(str(i // 2), ts, "live" if i % 2 else "filled")))
    return out


def cut_into_tasks(records: list[tuple[str, dict]], cuts: list[int], producer: str) -> list:
    bounds = sorted({c % (len(records) + 1) for c in cuts} | {0, len(records)})
    tasks = []
    for no, (a, b) in enumerate(zip(bounds, bounds[1:])):
        by_kind: dict[str, list[dict]] = {}
        for kind, rec in records[a:b]:
            by_kind.setdefault(kind, []).append(rec)
        tasks += [(kind, envelope(kind, recs, producer, no)) for kind, recs in by_kind.items()]
    return tasks


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 40),
    seed=st.integers(0, 10**6),
    cuts_a=st.lists(st.integers(0, 40), max_size=8),
    cuts_b=st.lists(st.integers(0, 40), max_size=8),
    extra_b=st.integers(0, 5),
    fail=st.sets(st.integers(0, 40), max_size=5),
)
def test_any_two_cuttings_interleaved_store_exactly_the_union_once(
    n, seed, cuts_a, cuts_b, extra_b, fail
):
    rng = random.Random(seed)
    records = stream(n + extra_b, rng)
    a = cut_into_tasks(records[:n], cuts_a, "a")  # feeder a missed the last `extra_b` records
    b = cut_into_tasks(records, cuts_b, "b")
    queue = a + b
    rng.shuffle(queue)  # Celery gives no order across tasks
    w = World(ServerSelectionTimeoutError("no primary"))
    attempts = 0
    while queue:
        kind, env = queue.pop(0)
        w.up[0] = attempts not in fail  # some attempts meet a MongoDB that is down
        attempts += 1
        out = w.ingest(kind, env)
        if out.retry_in is not None:
            queue.insert(rng.randrange(len(queue) + 1), (kind, env))  # retried, at any time
    union = {f"{k}/{documents.natural_id(k, r)}" for k, r in records}
    assert set(w.written) == union
    if not fail:
        assert set(w.written.values()) == {1}  # every record reached a writer exactly once
    stored = {f"trades/{i}" for i in w.ids("trades")} | {f"tickers/{i}" for i in w.ids("tickers")}
    stored |= {f"books/{i}" for i in w.ids("books")} | {f"orders/{i}" for i in w.ids("order")}
    assert stored == union
    events = {(r["ordId"], r["uTime"], r["state"]) for k, r in records if k == "orders"}
    assert int(w.state_r.get(keys.ORDER_COUNTER) or 0) == len(events)  # one order<N> each
