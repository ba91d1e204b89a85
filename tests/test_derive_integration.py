"""Candles from trades and the rolling VWAP end to end: okxsim (9 instruments, a fast clock), the
real feeder, a real Celery worker (in-process, solo pool, both queues), pymongo against the
MongoDB wire-protocol server (`mongodb_uri`, the indexes created) and a real `celery beat`
(RedBeat) process sending the rebuild every two seconds.

The clock runs at 40x: twelve simulated minutes of trading take about eighteen seconds, so the
run holds 1m and 5m bars by the dozen and two 1H bars per instrument: okxsim's clock jumps to
two minutes before an hour, so the second one is complete (its trades known from its start on)
though not over; it is compared with okxsim's forming bar once the market is paused. About
60 s in all."""

from __future__ import annotations

import os
import subprocess
import sys
from bisect import bisect_right
from decimal import Decimal
from fractions import Fraction

import pytest
import redis
from pymongo import MongoClient

from core import keys
from core.contract import AUDIT_TASK, BACKFILL_QUEUE
from core.gaps import Gap
from okxsim.config import DEFAULT_INSTRUMENTS
from tasks.app import app
from tasks.backfill import context
from tasks.derive import bars
from tasks.writers.mongo_history import ensure_indexes
from tests.feeder_fixtures import gaps
from tests.polling import wait_for
from tests.test_backfill_integration import (
    fault,
    feeder_factory,  # noqa: F401 - a fixture
    get,
    running_worker,
    sim_now,
)

pytestmark = pytest.mark.integration

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
W_S = 60  # VWAP window (the unit tests cover the 5-minute default)
HOLE_INST = "TON-USDT"  # gets an open gap nobody repairs


def _s(v):
    return v.decode() if isinstance(v, bytes) else v


def start_beat(redis_url, log_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("OKX_")}
    env.update(
        REDIS_URL=redis_url,
        PYTHONPATH=ROOT,
        DERIVE_EVERY_S="2",
        BACKFILL_SWEEP_S="3600",
        AUDIT_EVERY_S="3600",
        BACKFILL_FILLS_EVERY_S="3600",
    )
    celery = os.path.join(os.path.dirname(sys.executable), "celery")
    log = open(log_path, "w")
    proc = subprocess.Popen(
        [celery, "-A", "tasks", "beat", "-S", "redbeat.RedBeatScheduler", "--loglevel=INFO"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    return proc, log


def beat_tail(tmp_path):
    return (tmp_path / "beat.log").read_text()[-1500:]


def okx_candles(sim, inst, bar):
    rows = get(sim, f"/api/v5/market/candles?instId={inst}&bar={bar}&limit=300")
    return {int(r[0]): r for r in rows}


class TruthVwap:
    """Independent of tasks/derive: Fraction prefix sums over the stored trades sorted by ts;
    the value at a mark covers the trades with mark - window < ts <= mark."""

    def __init__(self, trades):
        self.trades = sorted(trades, key=lambda t: int(t["ts"]))
        self.times = [int(t["ts"]) for t in self.trades]
        self.num, self.den, self.unval = [Fraction(0)], [Fraction(0)], [0]
        for t in self.trades:
            self.num.append(self.num[-1] + Fraction(t["px"]) * Fraction(t["sz"]))
            self.den.append(self.den[-1] + Fraction(t["sz"]))
            self.unval.append(self.unval[-1] + (not t["validated"]))

    def at(self, mark, window_ms):
        lo = bisect_right(self.times, mark - window_ms)
        hi = bisect_right(self.times, mark)
        if hi == lo:
            return None
        value = (self.num[hi] - self.num[lo]) / (self.den[hi] - self.den[lo])
        return value, self.unval[hi] == self.unval[lo]


def lag(broker, state):
    """What the rebuild has still to do ("" = nothing queued, nothing dirty, every watermark
    seen)."""
    queued = (broker.llen("ingest"), broker.hlen("unacked"), state.zcard(keys.DERIVE_DIRTY))
    if any(queued):
        return f"ingest, unacked, dirty: {queued}"
    seen = {_s(k): int(v) for k, v in state.hgetall(keys.DERIVE_SEEN_WM).items()}
    for inst in DEFAULT_INSTRUMENTS:
        wm = broker.hget(keys.watermark_key("trades-all", inst), "ts")
        if wm is None or seen.get(inst) != int(wm):
            return f"{inst}: watermark {_s(wm)}, seen {seen.get(inst)}"
    return ""


def caught_up(broker, state, db=None):
    return not lag(broker, state)


def test_candles_and_vwap_from_trades_match_okxsim_and_an_independent_computation(
    sim_factory,
    feeder_factory,  # noqa: F811 - the fixture imported above
    redis_url,
    tmp_path,
    monkeypatch,
    mongodb_uri,
):
    sim = sim_factory(
        instruments=DEFAULT_INSTRUMENTS, clock_speed=40, rate=0.2, tick_ms=25, bot_interval_s=0
    )
    # okxsim's clock jumps (forward) to two simulated minutes before an hour begins: the feeder
    # is live before it, so that 1H bar is complete (a bar is complete only when its trades are
    # known from its start on)
    boundary = bars.start_of("1H", sim_now(sim)) + bars.HOUR
    ahead_s = (boundary - 120_000 - sim_now(sim)) / 1000
    sim.call(lambda ex: setattr(ex.clock, "_wall0", ex.clock._wall0 + ahead_s))
    sim_start = sim_now(sim)
    broker = redis.Redis.from_url(redis_url)
    state = redis.Redis.from_url(redis_url.replace("/0", "/1"))
    mongo = MongoClient(mongodb_uri, serverSelectionTimeoutMS=5000, tz_aware=True)
    db = mongo.get_default_database()
    ensure_indexes(db)
    # the audit and the rebuild run on okxsim's clock (40x ahead of the wall clock)
    monkeypatch.setattr("tasks.backfill.tasks.now_ms", lambda: sim_now(sim))
    beat, beat_log = start_beat(redis_url, tmp_path / "beat.log")
    try:
        with running_worker(
            redis_url,
            sim,
            mongo,
            state,
            mongodb_db=db.name,
            vwap_window_s=W_S,
            audit_lag_s=1,
            audit_window_s=7200,
        ):
            feeder_factory(
                sim, redis_url, channels="trades-all", instruments=",".join(DEFAULT_INSTRUMENTS)
            )
            wait_for(
                lambda: all(db.trades.find_one({"instId": i}) for i in DEFAULT_INSTRUMENTS),
                20,
                what="live trades of every instrument",
            )

            # and a dropped connection, in a complete stretch, whose missed trades backfill repairs
            wait_for(lambda: sim_now(sim) > boundary + 90_000, 20, what="past the hour")

            def reconnect_gap_filled():
                found = [g for g in gaps(broker) if g["cause"] == "reconnect"]
                if not found:
                    fault(sim, kind="drop")
                    return None
                return all(g["status"] == "filled" for g in found) and found

            drop_gaps = wait_for(reconnect_gap_filled, 40, interval=1.5, what="a repaired drop")
            # and an open gap that nobody repairs
            now = sim_now(sim)
            hole = (now - 20_000, now - 10_000)
            context.ledger().create(
                Gap("trades-all", HOLE_INST, hole[0], hole[1], "manual", reason="test hole"),
                "test",
                now,
            )
            # When twelve simulated minutes have been traded, and the market stops
            wait_for(lambda: sim_now(sim) - sim_start > 12 * 60_000, 40, what="12 sim minutes")
            assert db.trades.find_one({"ts": {"$lt": str(boundary)}}) is not None
            fault(sim, kind="pause", seconds=600)
            try:
                wait_for(lambda: caught_up(broker, state), 60, interval=0.3, what="rebuild")
            except AssertionError:
                raise AssertionError(f"{lag(broker, state)}; beat: {beat_tail(tmp_path)}") from None

            # Then every complete 1m, 5m and 1H bar equals okxsim's candle
            compared = {"1m": 0, "5m": 0, "1H": 0}
            straddled = 0
            for inst in DEFAULT_INSTRUMENTS:
                for bar in compared:
                    okx = okx_candles(sim, inst, bar)
                    mine = {
                        int(d["ts"]): d
                        for d in db.candles.find({"instId": inst, "bar": bar, "source": "trades"})
                    }
                    assert mine, (inst, bar)
                    for ts, d in mine.items():
                        touches_hole = inst == HOLE_INST and bars.overlaps(
                            ts, bars.end_of(bar, ts), [hole]
                        )
                        if touches_hole:
                            # a bar touching an open gap: incomplete, never final
                            assert (d["complete"], d["final"]) == (False, False), (inst, bar, ts)
                            continue
                        if not d["complete"]:
                            continue
                        row = okx[ts]
                        assert [Decimal(x) for x in row[1:7]] == [
                            Decimal(d[k]) for k in ("o", "h", "l", "c", "vol", "volCcy")
                        ], (inst, bar, ts, row, d)
                        compared[bar] += 1
                        if any(
                            g["instId"] == inst
                            and bars.overlaps(
                                ts, bars.end_of(bar, ts), [(int(g["start_ms"]), int(g["end_ms"]))]
                            )
                            for g in drop_gaps
                        ):
                            straddled += 1
                    # every okxsim bar with trades since our coverage is built
                    for ts, row in okx.items():
                        if ts >= boundary and Decimal(row[5]) > 0:
                            assert ts in mine, (inst, bar, ts)
            assert compared["1m"] > 9 * 8 and compared["5m"] > 9 and compared["1H"] >= 8, compared
            assert straddled > 0, "no compared bar straddled the repaired drop"

            # VWAP: every second mark equals the independent value from the stored trades
            def check_vwap(inst):
                truth = TruthVwap(db.trades.find({"instId": inst}))
                marks = {d["ts"]: d for d in db.vwap.find({"instId": inst})}
                until = int(state.hget(keys.DERIVE_VWAP_UNTIL, inst))
                first = -(-truth.times[0] // 1000) * 1000
                checked = 0
                for m in range(first, until + 1, 1000):
                    want = truth.at(m, W_S * 1000)
                    if want is None:
                        assert m not in marks
                        continue
                    value, validated = want
                    got = marks[m]
                    assert abs(Fraction(Decimal(got["vwap"])) - value) <= abs(value) / 10**33, (
                        inst,
                        m,
                    )
                    assert got["validated"] is validated, (inst, m)
                    checked += 1
                latest = {_s(k): _s(v) for k, v in state.hgetall(keys.vwap_key(inst)).items()}
                assert (
                    latest["ts"] == str(max(marks)) and latest["vwap"] == marks[max(marks)]["vwap"]
                )
                return checked, marks

            unvalidated = {}
            for inst in DEFAULT_INSTRUMENTS:
                checked, marks = check_vwap(inst)
                assert checked > 600, (inst, checked)
                unvalidated[inst] = {ts for ts, d in marks.items() if not d["validated"]}
                assert unvalidated[inst], inst  # the live feed's trades are not validated yet

            # And after the audit, the VWAP marks flip to validated
            audited = DEFAULT_INSTRUMENTS[:2]
            for inst in audited:
                app.send_task(AUDIT_TASK, kwargs={"instId": inst}, queue=BACKFILL_QUEUE)
            wait_for(
                lambda: all(
                    broker.hget(keys.audit(i), "validated_until") is not None
                    and state.hget(keys.VALIDATED_UNTIL_KEY, i)
                    == broker.hget(keys.audit(i), "validated_until")
                    and caught_up(broker, state, db)
                    for i in audited
                ),
                40,
                interval=0.3,
                what="the audit and the VWAP revalidation",
            )
            for inst in audited:
                checked, marks = check_vwap(inst)
                flipped = {ts for ts in unvalidated[inst] if marks[ts]["validated"]}
                assert len(flipped) > 300, (inst, len(flipped))
    finally:
        beat.terminate()
        try:
            beat.wait(10)
        except subprocess.TimeoutExpired:
            beat.kill()
        beat_log.close()
