"""Backfill end to end: okxsim (REST + WebSocket, fast simulated clock), a real redis-server
(broker, ledger and state), a real Celery worker (in-process, solo pool, both queues) sharing a
mongomock database with the test, and the real feeder where the issue asks for one."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager

import mongomock
import orjson
import pytest
import redis
from celery.contrib.testing.worker import start_worker

from collector.feeder import Feeder
from core import settings as settings_mod
from core.settings import WorkerSettings as Settings
from core.settings import load
from localrun.redis_server import free_port
from okx.signing import Credentials
from tasks import clients
from tasks.app import app
from tasks.backfill import context
from tests.feeder_fixtures import INSTS, gaps
from tests.polling import wait_for

pytestmark = pytest.mark.integration

KEY, SECRET, PASS = "okxsim-key", "okxsim-secret", "okxsim-pass"
CREDS_ENV = {"OKX_API_KEY": KEY, "OKX_API_SECRET": SECRET, "OKX_API_PASSPHRASE": PASS}


def get(sim, path):
    with urllib.request.urlopen(sim.rest_url + path, timeout=10) as r:
        return orjson.loads(r.read())["data"]


def fault(sim, **body):
    req = urllib.request.Request(
        sim.rest_url + "/sim/faults", data=orjson.dumps(body), method="POST"
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        return orjson.loads(resp.read())


def sim_now(sim):
    return sim.call(lambda ex: ex.clock.now_ms())


@pytest.fixture
def feeder_factory():
    feeders = []

    def make(sim, redis_url, **kw):
        kw.setdefault("instruments", ",".join(INSTS))
        kw.setdefault("ping_after_s", 2.0)
        kw.setdefault("health_port", free_port())
        kw.setdefault("feeder_id", "bf-feeder")
        f = Feeder(
            load(env=CREDS_ENV, redis_url=redis_url, ws_url=sim.ws_url, rest_url=sim.rest_url, **kw)
        ).start()
        feeders.append(f)
        return f

    yield make
    for f in feeders:
        if not f.stopping.is_set():
            f.stop(5.0)


@contextmanager
def running_worker(redis_url, sim, mongo, state, **overrides):
    s = Settings(
        redis_url=redis_url,
        okx_rest_url=sim.rest_url,
        credentials=Credentials(KEY, SECRET, PASS),
        backfill_inst_types=("SPOT", "MARGIN"),
        backfill_retry_s=0.5,
        books_sample_ms=0,
        books_retention_s=0,
        **overrides,
    )
    settings_mod.use(s)
    clients.install(mongo=mongo, redis=state)
    # mongomock checks a unique index by scanning every document (10k trades take 150 s to
    # insert with them, 0.6 s without); `_id` is the natural key, so nothing depends on them.
    clients._indexes_done = True
    context.install()
    saved = {k: app.conf[k] for k in ("broker_url", "worker_soft_shutdown_timeout")}
    app.conf.broker_url = redis_url
    app.conf.worker_soft_shutdown_timeout = 0  # the thread worker stops at once in tests
    try:
        with start_worker(
            app,
            pool="solo",
            perform_ping_check=False,
            queues=["ingest", "backfill"],
            shutdown_timeout=20,
        ) as w:
            yield w
    finally:
        app.conf.update(saved)
        clients.install()
        settings_mod.use(None)


def settled(broker):
    """Nothing queued or in flight, and no gap left open."""
    return (
        broker.llen("ingest") == 0
        and broker.llen("backfill") == 0
        and broker.hlen("unacked") == 0
        and broker.zcard("gaps:open") == 0
    )


def freeze_market(sim):
    """Stop the bot and every market, so 'final state' stays final while the test compares."""
    sim.call(lambda ex: setattr(ex.account, "every", 0))
    fault(sim, kind="pause", seconds=600)


def test_downtime_of_ten_simulated_minutes_is_repaired_exactly(
    sim_factory, feeder_factory, redis_url
):
    # Given okxsim at 40x (ten simulated minutes in fifteen seconds), a worker and the feeder on
    # trades-all and the private channels
    sim = sim_factory(clock_speed=40, rate=0.5, tick_ms=25)
    broker = redis.Redis.from_url(redis_url)
    state = redis.Redis.from_url(redis_url.replace("/0", "/1"))
    mongo = mongomock.MongoClient()
    db = mongo["okex"]
    channels = "trades-all,orders,balance_and_position"
    with running_worker(redis_url, sim, mongo, state):
        f = feeder_factory(sim, redis_url, channels=channels)
        wait_for(
            lambda: (
                db.trades.count_documents({}) > 100
                and db.order.count_documents({}) > 5
                and state.exists("balance:USDT")
            ),
            20,
            what="live data stored",
        )
        # When the feeder stops for ten minutes of simulated trading
        f.stop(5.0)
        stopped_at = sim_now(sim)
        wait_for(
            lambda: sim_now(sim) - stopped_at >= 600_000,
            30,
            interval=0.2,
            what="ten simulated minutes",
        )
        # and comes back
        feeder_factory(sim, redis_url, channels=channels)
        wait_for(
            lambda: {g["channel"] for g in gaps(broker)} >= {"trades-all", "orders"},
            20,
            what="startup gaps recorded",
        )
        wait_for(
            lambda: broker.zcard("gaps:open") == 0,
            60,
            interval=0.2,
            what="every startup gap repaired",
        )
        freeze_market(sim)
        # fills have no live source: the beat's fills sync pages them from REST
        app.send_task("tasks.backfill.sync_fills", queue="backfill")
        truth_fills = {f["billId"] for f in get(sim, "/sim/truth/fills")}
        wait_for(
            lambda: (
                {d["_id"] for d in db.fills.find({}, {"_id": 1})} >= truth_fills and settled(broker)
            ),
            30,
            what="fills synced, queues drained",
        )
        truth_bals = get(sim, "/sim/truth/balances")
        truth_pos = get(sim, "/sim/truth/positions")

        def account_matches():
            bals = all(
                (state.hget(f"balance:{b['ccy']}", "cashBal") or b"").decode() == b["cashBal"]
                for b in truth_bals
            )
            pos = all(
                (state.hget(f"position:{p['posId']}", "pos") or b"0").decode() == p["pos"]
                for p in truth_pos
            )
            return bals and pos

        # the frozen market's last pushes may still be on their way to the worker
        wait_for(
            lambda: account_matches() and settled(broker),
            15,
            interval=0.1,
            what="balances and positions equal okxsim's final state",
        )

        # Then every gap ended filled (trades, orders) or unrepairable with a reason
        ledger = gaps(broker)
        assert all(g["status"] in ("filled", "unrepairable") for g in ledger)
        assert all(g["reason"] for g in ledger if g["status"] == "unrepairable")
        startup = [g for g in ledger if g["cause"] == "startup"]
        assert {g["channel"] for g in startup} >= {"trades-all", "orders"}
        # trades: exactly the truth from the first stored trade on, 0 missing, 0 duplicated
        for inst in INSTS:
            stored = [int(d["tradeId"]) for d in db.trades.find({"instId": inst})]
            assert len(stored) == len(set(stored))
            truth = [
                int(t["tradeId"])
                for t in get(sim, f"/sim/truth/trades?instId={inst}")
                if int(t["tradeId"]) >= min(stored)
            ]
            assert sorted(stored) == truth, f"{inst}: {len(set(truth) - set(stored))} missing"
            gap_ids = [g for g in startup if g["channel"] == "trades-all" and g["instId"] == inst]
            lo, hi = int(gap_ids[0]["start_id"]), int(gap_ids[0]["end_id"])
            assert hi - lo > 1000  # the downtime really lost trades...
            assert db.trades.count_documents({"instId": inst, "validated": True}) >= hi - lo - 1
        # orders: every final state stored, nothing stored that the exchange never had
        events = {(o["ordId"], o["uTime"], o["state"]) for o in get(sim, "/sim/truth/orders")}
        stored_orders = {(d["ordId"], d["uTime"], d["state"]) for d in db.order.find()}
        first = min(int(d["cTime"]) for d in db.order.find())
        finals = {
            (o["ordId"], o["uTime"], o["state"])
            for o in get(sim, "/sim/truth/orders?final=1")
            if int(o["cTime"]) >= first
        }
        assert finals <= stored_orders, f"{len(finals - stored_orders)} final order states missing"
        assert stored_orders <= events
        (orders_gap,) = [g for g in startup if g["channel"] == "orders"]
        assert int(orders_gap["written"]) > 0  # REST supplied what the socket missed
        # fills: exactly the truth
        assert {d["_id"] for d in db.fills.find({}, {"_id": 1})} == truth_fills
        # balances and positions: okxsim's final state (waited for above), still
        assert account_matches() and truth_bals and truth_pos


def test_gaps_from_twenty_faults_all_end_filled_or_unrepairable(
    sim_factory, feeder_factory, redis_url
):
    sim = sim_factory(clock_speed=1, tick_ms=25, checksum="crc", bot_interval_s=0)
    broker = redis.Redis.from_url(redis_url)
    state = redis.Redis.from_url(redis_url.replace("/0", "/1"))
    mongo = mongomock.MongoClient()
    with running_worker(redis_url, sim, mongo, state):
        f = feeder_factory(sim, redis_url, channels="books,trades,trades-all,tickers,candle1s")
        wait_for(lambda: mongo["okex"].trades.count_documents({}) > 20, 15, what="live")
        kinds = [
            "gap",
            "corrupt",
            "drop",
            "gap",
            "stall",
            "malformed",
            "gap",
            "corrupt",
            "rate_limit",
            "drop",
            "gap",
            "pause",
            "corrupt",
            "gap",
            "drop",
            "malformed",
            "gap",
            "stall",
            "corrupt",
            "drop",
        ]
        assert len(kinds) == 20
        for i, kind in enumerate(kinds):
            body = {"kind": kind, "instId": INSTS[i % 2]}
            if kind in ("stall", "pause", "rate_limit"):
                body["seconds"] = 1.5
            if kind in ("drop", "stall", "malformed"):
                body.pop("instId")
            fault(sim, **body)
            time.sleep(0.4)

        # A reconnect only opens a trades-all gap if a trade happened while the feeder was
        # away (a contiguous tradeId is nothing missed); in a calm market that can fail to
        # happen for all four drops, so drop again until one does.
        def trades_all_gap():
            if any(g["channel"] == "trades-all" for g in gaps(broker)):
                return True
            if not f.pipeline.lost:
                fault(sim, kind="drop")
            return None

        wait_for(trades_all_gap, 60, interval=1.5, what="a trades-all gap")
        wait_for(
            lambda: not f.pipeline.lost and not f.pipeline.book_fail,
            20,
            what="every loss window closed",
        )
        wait_for(
            lambda: len(gaps(broker)) >= 20 and settled(broker),
            60,
            interval=0.2,
            what="all gaps repaired",
        )
        ledger = gaps(broker)
    causes = {g["cause"] for g in ledger}
    assert {"reconnect", "seq_gap", "checksum"} <= causes, causes
    assert broker.zcard("gaps:open") == 0
    for g in ledger:
        assert g["status"] in ("filled", "unrepairable"), sorted(g.items())
        if g["status"] == "unrepairable":
            assert g["reason"], g
    by_channel = {(g["channel"], g["status"]) for g in ledger}
    assert ("books", "unrepairable") in by_channel and ("trades-all", "filled") in by_channel
    assert all(
        g["reason"] == "book history cannot be backfilled"
        for g in ledger
        if g["channel"] == "books"
    )


def test_audit_finds_and_repairs_trades_deleted_behind_the_collectors_back(
    sim_factory, feeder_factory, redis_url
):
    sim = sim_factory(instruments=("BTC-USDT",), tick_ms=25, bot_interval_s=0, rate=5)
    broker = redis.Redis.from_url(redis_url)
    state = redis.Redis.from_url(redis_url.replace("/0", "/1"))
    mongo = mongomock.MongoClient()
    trades = mongo["okex"].trades
    with running_worker(redis_url, sim, mongo, state, audit_lag_s=1, audit_window_s=600):
        f = feeder_factory(sim, redis_url, instruments="BTC-USDT", channels="trades-all")
        wait_for(lambda: trades.count_documents({}) > 300, 20, what="trades stored")
        f.stop(5.0)
        wait_for(lambda: settled(broker), 10, what="ingest drained")
        # Behind the collector's back: 7 trades deleted, one invented
        victims = [d["tradeId"] for d in trades.find().sort("tradeId", 1).skip(50).limit(7)]
        trades.delete_many({"tradeId": {"$in": victims}})
        fake = dict(trades.find_one(), _id="BTC-USDT:1", tradeId="1")
        trades.insert_one(fake)
        newest = max(int(d["ts"]) for d in trades.find())
        wait_for(lambda: sim_now(sim) > newest + 1500, 5, what="past the audit lag")
        app.send_task("tasks.backfill.audit", queue="backfill")
        wait_for(lambda: broker.exists("audit:BTC-USDT") and settled(broker), 30, what="audit done")
    report = {k.decode(): v.decode() for k, v in broker.hgetall("audit:BTC-USDT").items()}
    assert int(report["missing"]) >= 7 and report["extra"] == "1"
    restored = list(trades.find({"tradeId": {"$in": victims}}))
    assert len(restored) == 7 and all(d["validated"] for d in restored)
    assert trades.find_one({"tradeId": "1"}) is not None  # reported, never deleted
    window = {"$gte": int(report["window_start"]), "$lte": int(report["window_end"])}
    in_window = [
        d
        for d in trades.find()
        if window["$gte"] <= int(d["ts"]) <= window["$lte"] and d["tradeId"] != "1"
    ]
    assert in_window and all(d["validated"] for d in in_window)
    truth = [
        t["tradeId"]
        for t in get(sim, "/sim/truth/trades?instId=BTC-USDT")
        if window["$gte"] <= int(t["ts"]) <= window["$lte"]
    ]
    assert sorted(int(d["tradeId"]) for d in in_window) == sorted(int(t) for t in truth)


def test_celery_call_backfill_from_a_shell_against_a_running_worker(sim_factory, redis_url):
    sim = sim_factory(instruments=("BTC-USDT",), tick_ms=25, bot_interval_s=0, clock_speed=10)
    broker = redis.Redis.from_url(redis_url)
    state = redis.Redis.from_url(redis_url.replace("/0", "/1"))
    mongo = mongomock.MongoClient()
    wait_for(
        lambda: len(get(sim, "/sim/truth/trades?instId=BTC-USDT")) > 400,
        20,
        interval=0.2,
        what="trading history",
    )
    truth = get(sim, "/sim/truth/trades?instId=BTC-USDT")
    start, end = int(truth[20]["ts"]), int(truth[-20]["ts"])
    with running_worker(redis_url, sim, mongo, state):
        env = {k: v for k, v in os.environ.items() if not k.startswith("OKX_")}
        env["REDIS_URL"] = redis_url
        kwargs = orjson.dumps(
            {"channel": "trades", "instId": "BTC-USDT", "start": start, "end": end}
        ).decode()
        celery = os.path.join(os.path.dirname(sys.executable), "celery")
        out = subprocess.run(
            [celery, "-A", "tasks", "call", "backfill", "--kwargs", kwargs],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            cwd=os.path.dirname(os.path.dirname(__file__)),
        )
        assert out.returncode == 0, out.stderr
        wait_for(
            lambda: (
                any(g["cause"] == "manual" and g["status"] == "filled" for g in gaps(broker))
                and settled(broker)
            ),
            30,
            what="manual gap filled",
        )
    (gap,) = gaps(broker)
    assert (gap["channel"], gap["instId"], gap["start_ms"], gap["end_ms"]) == (
        "trades",
        "BTC-USDT",
        str(start),
        str(end),
    )
    want = sorted(int(t["tradeId"]) for t in truth if start <= int(t["ts"]) <= end)
    got = sorted(int(d["tradeId"]) for d in mongo["okex"].trades.find())
    assert got == want and all(d["validated"] for d in mongo["okex"].trades.find())
