"""Gap ledger transitions (fakeredis with Lua) and the repair runner with a fake REST source:
claims and leases, resume after a kill, exactly-once storage, every ending with its reason."""

from __future__ import annotations

import fakeredis
import mongomock
import pytest

from core.gaps import Gap
from core.settings import WorkerSettings as Settings
from okx.rest.client import BadRequest, RateLimited, RestError
from okx.rest.endpoints import Page
from tasks.backfill.ledger import GapLedger
from tasks.backfill.repair import Repairer
from tasks.backfill.snapshots import closed_since
from tasks.backfill.sweep import sweep
from tasks.writers import Store

SETTINGS = Settings(books_sample_ms=0, books_retention_s=0)
T = 1_700_000_000_000


def trade(tid):
    return {
        "instId": "BTC-USDT",
        "tradeId": str(tid),
        "px": "1",
        "sz": "1",
        "side": "buy",
        "ts": str(T + tid),
        "count": "1",
        "source": "rest",
        "seqId": None,
        "channel": "trades-all",
    }


class FakeSource:
    """history.trades over ids 1..n (pages of 10, newest first), optionally failing."""

    def __init__(self, n=95, fail_after_pages=None, error=None, ended=False):
        self.n, self.fail_after_pages, self.error, self.ended = n, fail_after_pages, error, ended
        self.requests = 0
        self.balances_rows, self.positions_rows = [], []

    def pages(self, step, resume):
        low = int(step.lower_id or 0)
        cursor = int(resume) if resume else int(step.upper_id or self.n + 1)
        while True:
            if self.fail_after_pages is not None and self.requests >= self.fail_after_pages:
                self.fail_after_pages = None
                raise self.error
            self.requests += 1
            ids = [i for i in range(max(low + 1, cursor - 10), cursor) if i >= 1]
            if not ids:
                yield Page([], None, history_ended=self.ended)
                return
            cursor = min(ids)
            done = cursor <= low + 1
            yield Page([trade(i) for i in ids], None if done else str(cursor))
            if done:
                return

    def balances(self):
        return self.balances_rows

    def positions(self):
        return self.positions_rows

    def book(self, inst):
        return {
            "instId": inst,
            "channel": "books",
            "ts": str(T),
            "seqId": 5,
            "asks": [["2", "1", "0", "1"]],
            "bids": [["1", "1", "0", "1"]],
            "depth": 400,
            "full": True,
            "source": "rest",
        }


@pytest.fixture
def env():
    r = fakeredis.FakeRedis()
    db = mongomock.MongoClient()["okex"]
    return r, db, GapLedger(r, lease_ms=10_000), Store(db, r, SETTINGS)


def new_gap(ledger, channel="trades-all", sid="10", eid="96", inst="BTC-USDT"):
    return ledger.create(
        Gap(channel, inst, T, T + 100, "reconnect", start_id=sid, end_id=eid), "f", T
    )


def stored_ids(db):
    return sorted(int(d["tradeId"]) for d in db.trades.find())


def test_claim_is_exclusive_until_the_lease_expires(env):
    r, _, ledger, _ = env
    gid = new_gap(ledger)
    assert ledger.claim(gid, "w1", 1000) == (True, "1")
    assert ledger.claim(gid, "w2", 5000) == (False, "busy")
    assert not ledger.progress(gid, "w2", 5000, "0|x", 1)  # not the owner: refused
    assert ledger.claim(gid, "w2", 1000 + 10_001) == (True, "2")  # w1 died: lease expired
    assert not ledger.finish(gid, "w1", 20_000, "filled")  # w1 lost it
    assert ledger.finish(gid, "w2", 20_000, "filled")
    assert ledger.claim(gid, "w3", 30_000) == (False, "filled")
    assert r.zcard("gaps:open") == 0
    assert ledger.claim("404", "w", 1) == (False, "missing")


def test_repair_fills_exactly_the_missing_ids_validated(env):
    r, db, ledger, store = env
    store.write("trades", [trade(10), trade(50)])  # the live feed had these
    gid = new_gap(ledger, sid="10", eid="96")
    res = Repairer(ledger, FakeSource(), store, clock=lambda: T).run(gid)
    assert res.status == "filled"
    assert stored_ids(db) == list(range(10, 96))  # 11..95 recovered, 96 not ours
    assert db.trades.count_documents({"validated": False}) == 1  # only 10: outside the gap
    g = ledger.get(gid)
    assert g["status"] == "filled" and g["cursor"] == "1|" and int(g["written"]) == 85
    assert r.zcard("gaps:open") == 0


def test_killed_repair_resumes_from_its_cursor(env):
    r, db, ledger, store = env
    gid = new_gap(ledger, sid="0", eid="96")
    source = FakeSource(fail_after_pages=4, error=RateLimited("50011", "50011"))
    first = Repairer(ledger, source, store, clock=lambda: T).run(gid)
    assert first.status == "released" and "RateLimited" in first.reason
    g = ledger.get(gid)
    assert g["status"] == "open" and g["cursor"] == "0|56" and g["failures"] == "1"
    assert stored_ids(db) == list(range(56, 96))
    before = source.requests
    second = Repairer(ledger, source, store, clock=lambda: T).run(gid)
    assert second.status == "filled"
    assert source.requests - before == 6  # 55..1: no page fetched twice
    assert stored_ids(db) == list(range(1, 96))


def test_lost_lease_stops_without_writing_over_the_new_owner(env):
    r, db, ledger, store = env
    gid = new_gap(ledger, sid="0", eid="96")
    clock = iter([T, T + 50_000] + [T + 50_000] * 100)  # lease expired after claim
    stolen = {}

    class Thief(FakeSource):
        def pages(self, step, resume):
            stolen["claim"] = ledger.claim(gid, "other", T + 20_000)
            yield from super().pages(step, resume)

    res = Repairer(ledger, Thief(), store, clock=lambda: next(clock)).run(gid, owner="slow")
    assert stolen["claim"] == (True, "2") and res.status == "lost"
    assert ledger.get(gid)["owner"] == "other" and "cursor" not in ledger.get(gid)


def test_history_that_ends_before_the_gap_start_is_unrepairable_with_the_reason(env):
    _, db, ledger, store = env

    class Short(FakeSource):
        def pages(self, step, resume):
            yield Page([trade(3), trade(4)], "3")
            yield Page([], None, history_ended=True)

    gid = ledger.create(Gap("trades", "BTC-USDT", T - 10**6, T + 100, "manual"), "f", T)
    res = Repairer(ledger, Short(), store, clock=lambda: T).run(gid)
    assert res.status == "unrepairable"
    assert ledger.get(gid)["reason"].startswith("OKX history ends before the gap's start")
    assert stored_ids(db) == [3, 4]  # what exists is kept


def test_okx_rejection_is_unrepairable_at_once(env):
    _, _, ledger, store = env
    gid = new_gap(ledger)
    src = FakeSource(fail_after_pages=0, error=BadRequest("OKX 51001: no such instrument", "51001"))
    res = Repairer(ledger, src, store, clock=lambda: T).run(gid)
    assert res.status == "unrepairable" and ledger.get(gid)["reason"].startswith("OKX rejected")


def test_gives_up_after_max_failures_with_the_last_error(env):
    _, _, ledger, store = env
    gid = new_gap(ledger)
    results = []
    for _ in range(3):
        src = FakeSource(fail_after_pages=0, error=RestError("GET x: timed out"))
        results.append(Repairer(ledger, src, store, max_attempts=3, clock=lambda: T).run(gid))
    assert [x.status for x in results] == ["released", "released", "unrepairable"]
    assert (
        ledger.get(gid)["reason"] == "gave up after 3 failed attempts: RestError: GET x: timed out"
    )


def test_malformed_gap_and_book_gap(env):
    r, _, ledger, store = env
    bad = new_gap(ledger, sid="50", eid="40")
    assert Repairer(ledger, FakeSource(), store).run(bad).reason.startswith("malformed gap")
    book = new_gap(ledger, channel="books")
    res = Repairer(ledger, FakeSource(), store).run(book)
    assert (res.status, res.reason) == ("unrepairable", "book history cannot be backfilled")
    assert r.hget("book:BTC-USDT", "seqId") == b"5"  # Redis state reseeded


def test_account_snapshot_zeroes_what_rest_no_longer_lists(env):
    r, _, ledger, store = env
    store.write(
        "balances",
        [
            {"ccy": "BTC", "cashBal": "1", "uTime": str(T)},
            {"ccy": "ETH", "cashBal": "2", "uTime": str(T)},
        ],
    )
    store.write(
        "positions",
        [
            {
                "posId": "9",
                "instId": "BTC-USDT",
                "instType": "MARGIN",
                "pos": "3",
                "uTime": str(T + 5),
            }
        ],
    )
    src = FakeSource()
    src.balances_rows = [{"ccy": "BTC", "cashBal": "1.5", "uTime": str(T + 1), "source": "rest"}]
    gid = new_gap(ledger, channel="balance_and_position", inst="", sid="", eid="")
    res = Repairer(ledger, src, store, state_redis=r, clock=lambda: T).run(gid)
    assert res.status == "filled"
    assert r.hget("balance:BTC", "cashBal") == b"1.5" and r.hget("balance:ETH", "cashBal") == b"0"
    assert r.hget("position:9", "pos") == b"0" and int(r.hget("position:9", "uTime")) > T + 5


def test_closed_since_is_pure_and_keeps_zeroes_alone():
    stored = [
        {"ccy": "A", "cashBal": "0", "uTime": "5"},
        {"ccy": "B", "cashBal": "3", "uTime": "9"},
        {"ccy": "C", "cashBal": "1", "uTime": "1"},
    ]
    out = closed_since(stored, {"C"}, "ccy", "cashBal", now_ms=7)
    assert out == [{"ccy": "B", "cashBal": "0", "uTime": "10", "source": "rest"}]


def test_sweep_resends_lost_gaps_opens_stale_ones_and_snapshots_for_a_dead_feeder(env):
    r, _, ledger, _ = env
    now = T + 1_000_000
    old = new_gap(ledger)  # created at T: long untouched
    r.hset("wm:trades-all:ETH-USDT", mapping={"ts": str(T), "id": "77", "seen_ms": str(T)})
    r.hset("wm:orders:ANY", mapping={"ts": str(T), "id": "1", "seen_ms": str(T)})
    r.sadd("feeders", "f1")
    r.hset("feeder:f1", mapping={"heartbeat_ms": str(now - 120_000)})
    sent, snaps = [], []
    s = Settings(backfill_requeue_after_s=120, backfill_stale_s=300, feeder_dead_s=30)
    out = sweep(
        ledger,
        now_ms=now,
        settings=s,
        send_repair=sent.append,
        send_snapshot=lambda: snaps.append(1),
    )
    assert out["resent"] == 1 and out["stale_gaps"] == 1 and out["dead_feeders"] == ["f1"]
    assert sent[0] == old and len(snaps) == 1
    stale = ledger.get(sent[1])
    assert (stale["channel"], stale["instId"], stale["start_id"], stale["cause"]) == (
        "trades-all",
        "ETH-USDT",
        "77",
        "stale",
    )
    assert r.smembers("feeders") == set()
    # a second sweep right after: nothing new (gap just re-sent, stale one open, feeder reported)
    again = sweep(
        ledger,
        now_ms=now + 1000,
        settings=s,
        send_repair=sent.append,
        send_snapshot=lambda: snaps.append(1),
    )
    assert again["resent"] == 0 and again["stale_gaps"] == 0 and again["dead_feeders"] == []
    assert again["snapshot"] is True  # still no live feeder while account watermarks exist


def test_on_demand_requests_default_their_range_and_refuse_what_cannot_work(env, monkeypatch):
    from tasks.backfill import context
    from tasks.backfill import plan as planning
    from tasks.backfill.tasks import create_manual_gap

    r, _db, ledger, _store = env
    monkeypatch.setattr(context, "ledger", lambda: ledger)
    now = T + 5_000
    # a snapshot needs no range: it is taken now
    gid = create_manual_gap("balances", None, None, None, now=now)
    gap = {k.decode(): v.decode() for k, v in r.hgetall(f"gap:{gid}").items()}
    assert (gap["channel"], gap["start_ms"], gap["end_ms"], gap["cause"]) == (
        "balance_and_position",
        str(now),
        str(now),
        "manual",
    )
    # a range without an end runs to now
    gid = create_manual_gap("trades", "BTC-USDT", T, None, now=now)
    gap = {k.decode(): v.decode() for k, v in r.hgetall(f"gap:{gid}").items()}
    assert (gap["start_ms"], gap["end_ms"]) == (str(T), str(now))
    for args, why in (
        (("trades", "BTC-USDT", None, None), "start is required"),
        (("trades", None, T, None), "instId is required"),
        (("trades", "BTC-USDT", T + 10, T), "before start"),
        (("trades", "BTC-USDT", 1_700_000, None), "seconds given"),
    ):
        with pytest.raises(planning.PlanError, match=why):
            create_manual_gap(*args, now=now)
