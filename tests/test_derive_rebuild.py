"""The rebuild against a real redis-server (dirty set, ledger, Lua) and mongomock: candles and VWAP
from stored trades equal an independent computation, late trades rebuild their bars, gaps make
bars incomplete until they close, the audit flips VWAP to validated, a second run writes nothing."""

from __future__ import annotations

import random
from decimal import Decimal
from fractions import Fraction

import mongomock
import pytest
import redis

from core import keys
from core.settings import WorkerSettings
from tasks.derive import bars, dirty, ohlcv
from tasks.derive.rebuild import Rebuilder
from tasks.derive.tasks import run_locked
from tasks.writers import Store
from tasks.writers.mongo_history import ensure_indexes, mark_trades_validated

pytestmark = pytest.mark.integration  # a real redis-server

INST = "BTC-USDT"
H0 = 1_767_225_600_000  # 2026-01-01 00:00 UTC (08:00 in Hong Kong)
W = 60_000  # a one-minute VWAP window keeps the marks few


def make_trades(n, start=H0 + 30_000, span=20 * bars.MINUTE, seed=7):
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        ts = start + rnd.randrange(span)
        out.append(
            {
                "instId": INST,
                "tradeId": str(1000 + i),
                "px": f"{rnd.randint(9000000, 9100000) / 100:.2f}",
                "sz": f"{rnd.randint(1, 5000) / 10000:.4f}",
                "side": rnd.choice(["buy", "sell"]),
                "ts": str(ts),
            }
        )
    # OKX numbers trades in time order
    out.sort(key=lambda t: int(t["ts"]))
    for i, t in enumerate(out):
        t["tradeId"] = str(1000 + i)
    return out


@pytest.fixture(params=["mongomock", "wire"])
def env(request, redis_url):
    """mongomock, and real pymongo against the MongoDB wire-protocol server with the indexes."""
    r = redis.Redis.from_url(redis_url)
    if request.param == "wire":
        from pymongo import MongoClient

        uri = request.getfixturevalue("mongodb_uri")
        client = MongoClient(uri, serverSelectionTimeoutMS=5000, tz_aware=True)
        db = client.get_default_database()
        ensure_indexes(db)
    else:
        db = mongomock.MongoClient()["okex"]
    store = Store(db, r, WorkerSettings(books_sample_ms=0))
    clock = {"now": H0}
    rb = Rebuilder(db, r, r, window_ms=W, clock=lambda: clock["now"])
    yield db, r, store, rb, clock
    r.close()


def set_watermark(r, ts):
    r.hset(keys.watermark_key("trades-all", INST), mapping={"ts": str(ts), "id": "0"})


def truth_candle(trades, bar, start):
    inside = [t for t in trades if bars.start_of(bar, int(t["ts"])) == start]
    return ohlcv.from_trades(inside)


def stored(db, bar):
    return {int(d["ts"]): d for d in db.candles.find({"instId": INST, "bar": bar})}


def truth_vwap(trades, mark):
    inside = [t for t in trades if mark - W < int(t["ts"]) <= mark]
    if not inside:
        return None
    num = sum(Fraction(t["px"]) * Fraction(t["sz"]) for t in inside)
    return num / sum(Fraction(t["sz"]) for t in inside)


def assert_candles_equal_truth(db, trades):
    for bar in ("1m", "5m", "1H", "1D", "1Dutc"):
        docs = stored(db, bar)
        starts = {bars.start_of(bar, int(t["ts"])) for t in trades}
        assert set(docs) == starts, bar
        for start, doc in docs.items():
            assert ohlcv.from_doc(doc) == truth_candle(trades, bar, start), (bar, start)
            assert doc["_id"] == f"{INST}:{bar}:{start}:trades" and doc["source"] == "trades"


def test_candles_and_vwap_from_shuffled_duplicated_batches_equal_the_truth(env):
    db, r, store, rb, clock = env
    trades = make_trades(400)
    arrived = trades + trades[::7]
    random.Random(3).shuffle(arrived)
    for i in range(0, len(arrived), 50):
        store.write("trades", arrived[i : i + 50])
    assert r.zcard(keys.DERIVE_DIRTY) == len({bars.minute_of(int(t["ts"])) for t in trades})
    last = int(trades[-1]["ts"])
    set_watermark(r, last)
    clock["now"] = last
    counts = rb.run()
    assert counts.cleared == counts.dirty and r.zcard(keys.DERIVE_DIRTY) == 0
    assert_candles_equal_truth(db, trades)
    # the first minute began before the first trade: unknown, so incomplete and never final
    ones = stored(db, "1m")
    first = min(ones)
    assert ones[first]["complete"] is False and ones[first]["final"] is False
    assert all(d["complete"] for s, d in ones.items() if s != first)
    # the minute the watermark is in is not over
    assert ones[bars.minute_of(last)]["final"] is False
    assert all(d["final"] for s, d in ones.items() if s not in (first, bars.minute_of(last)))
    # VWAP at every second mark from the first trade to the watermark
    marks = {d["ts"]: d for d in db.vwap.find({"instId": INST})}
    top = last - last % 1000
    for m in range(-(-int(trades[0]["ts"]) // 1000) * 1000, top + 1, 1000):
        want = truth_vwap(trades, m)
        if want is None:
            assert m not in marks
        else:
            assert abs(Fraction(Decimal(marks[m]["vwap"])) - want) < Fraction(1, 10**25)
            assert marks[m]["validated"] is False and marks[m]["window_ms"] == W
    latest = {k.decode(): v.decode() for k, v in r.hgetall(keys.vwap_key(INST)).items()}
    assert latest["ts"] == str(max(marks)) and latest["validated"] == "0"
    # a second run changes nothing
    again = rb.run()
    assert (again.candles, again.vwap, again.flagged) == (0, 0, 0)


def test_a_late_trade_rebuilds_its_bars_and_the_watermark_makes_bars_final(env):
    db, r, store, rb, clock = env
    trades = make_trades(200)
    store.write("trades", trades)
    set_watermark(r, int(trades[-1]["ts"]))
    rb.run()
    late = dict(trades[50], tradeId="999999", px="1.00", sz="2")  # far below the range
    store.write("trades", [late])
    assert r.zcard(keys.DERIVE_DIRTY) == 1
    counts = rb.run()
    assert counts.candles >= 5  # its 1m, 3m, 5m, 15m, ... bars
    assert_candles_equal_truth(db, trades + [late])
    assert stored(db, "1D")[bars.start_of("1D", int(late["ts"]))]["l"] == "1"
    # the bars still open finalise once the watermark passes their end
    open_1h = stored(db, "1H")[H0]
    assert open_1h["final"] is False
    set_watermark(r, H0 + bars.HOUR)
    store.write("trades", [dict(trades[-1], tradeId="5000000", ts=str(H0 + bars.HOUR))])
    clock["now"] = H0 + bars.HOUR
    rb.run()
    assert stored(db, "1H")[H0]["final"] is False  # the first 1H began before the first trade
    assert all(d["final"] for s, d in stored(db, "5m").items() if s > H0 and s < H0 + bars.HOUR)


def test_an_open_gap_makes_its_bars_incomplete_until_backfill_fills_it(env):
    db, r, store, rb, clock = env
    trades = make_trades(300)
    gap_start, gap_end = H0 + 5 * bars.MINUTE + 10_000, H0 + 7 * bars.MINUTE + 5_000
    before = [t for t in trades if not gap_start <= int(t["ts"]) <= gap_end]
    store.write("trades", before)
    set_watermark(r, int(trades[-1]["ts"]))
    gap = {
        "id": "7",
        "channel": "trades-all",
        "instId": INST,
        "start_ms": str(gap_start),
        "end_ms": str(gap_end),
        "status": "open",
    }
    r.hset(keys.gap_key("7"), mapping=gap)
    r.zadd(keys.GAPS_OPEN, {"7": gap_start})
    rb.run()
    ones = stored(db, "1m")
    touched = {bars.minute_of(gap_start) + i * bars.MINUTE for i in range(3)}
    for s, d in ones.items():
        if s in touched:
            assert (d["complete"], d["final"]) == (False, False), s
    assert stored(db, "5m")[H0 + 5 * bars.MINUTE]["complete"] is False
    assert stored(db, "1H")[H0]["final"] is False
    # backfill stores the gap's trades and closes it (what Repairer._finish calls)
    store.write("trades", [t for t in trades if gap_start <= int(t["ts"]) <= gap_end])
    r.zrem(keys.GAPS_OPEN, "7")
    r.hset(keys.gap_key("7"), "status", "filled")
    dirty.gap_closed(r, gap, "filled")
    rb.run()
    assert_candles_equal_truth(db, trades)
    ones = stored(db, "1m")
    assert all(ones[s]["complete"] and ones[s]["final"] for s in touched)
    # a filled gap in the middle does not move where the trades are known from
    before_gap = bars.minute_of(gap_start) - bars.MINUTE
    assert ones[before_gap]["complete"] and not ones[min(ones)]["complete"]


def test_an_unrepairable_gap_keeps_its_bars_incomplete_for_good(env):
    db, r, store, rb, _clock = env
    trades = make_trades(100)
    store.write("trades", trades)
    set_watermark(r, int(trades[-1]["ts"]))
    hole = {"instId": INST, "start_ms": str(H0 + 2 * bars.MINUTE), "end_ms": str(H0 + 150_000)}
    dirty.gap_closed(r, hole, "unrepairable")
    rb.run()
    ones = stored(db, "1m")
    assert ones[H0 + 2 * bars.MINUTE]["complete"] is False
    assert ones[H0 + 3 * bars.MINUTE]["complete"] is True
    rb.run()
    assert stored(db, "1m")[H0 + 2 * bars.MINUTE]["complete"] is False


def test_the_audit_flips_vwap_to_validated_and_sets_validated_until(env):
    db, r, store, rb, _clock = env
    trades = make_trades(200)
    store.write("trades", trades)
    last = int(trades[-1]["ts"])
    set_watermark(r, last)
    rb.run()
    assert db.vwap.count_documents({"validated": True}) == 0
    # the audit confirms everything up to 10 minutes in
    audited = H0 + 10 * bars.MINUTE
    mark_trades_validated(db, INST, [t["tradeId"] for t in trades if int(t["ts"]) <= audited])
    r.hset(keys.audit(INST), "validated_until", str(audited))
    rb.run()
    assert r.hget(keys.VALIDATED_UNTIL_KEY, INST) == str(audited).encode()
    for d in db.vwap.find({"instId": INST}):
        # validated exactly when the window's trades are all at or before the audited time
        window = [t for t in trades if d["ts"] - W < int(t["ts"]) <= d["ts"]]
        assert type(d["validated"]) is bool
        assert d["validated"] is all(int(t["ts"]) <= audited for t in window), d["ts"]
    assert db.vwap.count_documents({"validated": True, "ts": {"$gt": audited + W}}) == 0
    assert db.vwap.count_documents({"validated": True}) > 500
    # values are unchanged by validation
    for d in db.vwap.find({"instId": INST}):
        assert abs(Fraction(Decimal(d["vwap"])) - truth_vwap(trades, d["ts"])) < Fraction(1, 10**25)


def test_a_mark_made_during_the_rebuild_stays_dirty(env):
    db, r, store, rb, _clock = env
    trades = make_trades(50)
    store.write("trades", trades[:25])
    claimed = dirty.claim(r, 100)
    store.write("trades", trades[25:26])  # the same minute (or another), marked again
    remarked = dirty.minutes_of(trades[25:26])
    dirty.done(r, claimed)
    left = {dirty.parse_member(m) for m in r.zrange(keys.DERIVE_DIRTY, 0, -1)}
    assert left == remarked


def test_one_zadd_per_batch_whatever_its_size(env):
    db, r, store, rb, _clock = env
    calls = []

    class Counting:
        def __getattr__(self, name):
            attr = getattr(r, name)
            if name == "zadd":
                calls.append(name)
            return attr

    dirty.mark_trades(Counting(), make_trades(500))
    assert calls == ["zadd"]


def test_only_one_rebuild_runs_at_a_time(env):
    db, r, store, rb, _clock = env
    store.write("trades", make_trades(20))
    r.set(keys.DERIVE_LOCK, "someone-else")
    assert run_locked(rb, 60_000) is None
    assert r.zcard(keys.DERIVE_DIRTY) > 0  # untouched
    r.delete(keys.DERIVE_LOCK)
    out = run_locked(rb, 60_000)
    assert out is not None and out["dirty"] > 0 and r.get(keys.DERIVE_LOCK) is None


@pytest.mark.parametrize("field", ["vwap_window_s", "derive_batch"])
def test_a_window_or_batch_that_is_not_positive_is_a_clear_config_error(field):
    from core import settings as settings_mod
    from core.errors import ConfigError
    from tasks.derive.tasks import rebuilder

    settings_mod.use(WorkerSettings(**{field: 0}))
    try:
        with pytest.raises(ConfigError, match="must be positive"):
            rebuilder()
    finally:
        settings_mod.use(None)
