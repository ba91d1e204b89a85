"""Benchmark: the cost of rebuilding derived data (tasks/derive), per trade and per dirty bar.

    .venv/bin/python bench/derive.py [--instruments 9] [--minutes 10] [--per-minute 120]
                                     [--backend wire|mongomock] [--json]

Stores `--instruments` x `--minutes` x `--per-minute` trades through the real writer (which marks
their minutes dirty), then times, in the same run and on the same data:

    pure      ohlcv.from_trades + vwap.marks over every instrument's trades (no I/O)
    rebuild   one Rebuilder.run() over all dirty minutes: 1m..1D candles + VWAP marks
    again     a second run with nothing dirty (what an idle beat costs)
    late      one late trade per instrument in an old minute: the rebuild of its bars
    baseline  one plain find() of the same trades (the least any rebuild must read)

and reports each as µs per trade, ms per dirty bar (1m bars rebuilt; every longer bar follows)
and as a ratio to the baseline. Figures only, no pass/fail. `wire` (default) is pymongo against
the MongoDB wire-protocol server (nx-27017) the integration tests use; `mongomock` scans a whole
collection per query and shows what the batched reads save. Needs a redis-server (the dirty set).
"""

from __future__ import annotations

import argparse
import json
import random
import time
from typing import Any

import redis

from core import keys
from core.settings import WorkerSettings
from localrun.redis_server import RedisServer
from tasks.derive import bars, ohlcv
from tasks.derive import vwap as vw
from tasks.derive.rebuild import Rebuilder
from tasks.writers import Store
from tasks.writers.mongo_history import ensure_indexes

H0 = 1_767_225_600_000
WINDOW_MS = 300_000


def make_trades(inst: str, minutes: int, per_minute: int, first_id: int) -> list[dict]:
    rnd = random.Random(inst)
    out = []
    for m in range(minutes):
        for k in range(per_minute):
            out.append(
                {
                    "instId": inst,
                    "tradeId": str(first_id + len(out)),
                    "px": f"{rnd.randint(9_000_000, 9_100_000) / 100:.2f}",
                    "sz": f"{rnd.randint(1, 50_000) / 100_000:.5f}",
                    "side": "buy",
                    "ts": str(H0 + m * bars.MINUTE + k * (bars.MINUTE // per_minute)),
                }
            )
    return out


def open_db(backend: str) -> tuple[Any, Any]:
    if backend == "mongomock":
        import mongomock

        return mongomock.MongoClient()["okex"], None
    from pymongo import MongoClient

    from localrun.mongo_server import MongoServer

    server = MongoServer().start()
    db = MongoClient(server.uri, tz_aware=True)["bench_derive"]
    ensure_indexes(db)
    return db, server


def timed(fn: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--instruments", type=int, default=9)
    p.add_argument("--minutes", type=int, default=10)
    p.add_argument("--per-minute", type=int, default=120)
    p.add_argument("--backend", choices=("wire", "mongomock"), default="wire")
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    rs = RedisServer().start()
    db, server = open_db(a.backend)
    try:
        r = redis.Redis.from_url(rs.url)
        store = Store(db, r, WorkerSettings(books_sample_ms=0))
        insts = [f"I{i}-USDT" for i in range(a.instruments)]
        trades = {
            inst: make_trades(inst, a.minutes, a.per_minute, 1 + i * 10**7)
            for i, inst in enumerate(insts)
        }
        for inst, ts in trades.items():
            for i in range(0, len(ts), 500):
                store.write("trades", ts[i : i + 500])
            r.hset(keys.watermark_key("trades-all", inst), "ts", ts[-1]["ts"])
        n = sum(len(t) for t in trades.values())
        dirty_bars = r.zcard(keys.DERIVE_DIRTY)
        end = H0 + a.minutes * bars.MINUTE

        def pure() -> None:
            for ts in trades.values():
                by_minute: dict[int, list] = {}
                for t in ts:
                    by_minute.setdefault(bars.minute_of(int(t["ts"])), []).append(t)
                for group in by_minute.values():
                    ohlcv.from_trades(group)
                vw.marks(ts, H0, end, WINDOW_MS)

        rb = Rebuilder(db, r, r, window_ms=WINDOW_MS, batch=10**6)
        t_pure, _ = timed(pure)
        t_base, _ = timed(lambda: list(db[keys.TRADES].find({"instId": {"$in": insts}})))
        t_rebuild, counts = timed(rb.run)
        t_again, _ = timed(rb.run)
        late = [
            dict(ts[len(ts) // 2], tradeId=str(9 * 10**9 + i))
            for i, ts in enumerate(trades.values())
        ]
        store.write("trades", late)
        t_late, late_counts = timed(rb.run)
        figures = {
            "backend": a.backend,
            "trades": n,
            "dirty_1m_bars": dirty_bars,
            "candles_written": counts.candles,
            "vwap_marks_written": counts.vwap,
            "pure_us_per_trade": round(t_pure / n * 1e6, 2),
            "rebuild_us_per_trade": round(t_rebuild / n * 1e6, 2),
            "rebuild_ms_per_dirty_bar": round(t_rebuild / dirty_bars * 1000, 3),
            "rebuild_s": round(t_rebuild, 3),
            "idle_run_ms": round(t_again * 1000, 2),
            "late_trades_run_ms": round(t_late * 1000, 2),
            "late_candles_written": late_counts.candles,
            "baseline_find_s": round(t_base, 3),
            "rebuild_over_baseline": round(t_rebuild / t_base, 1),
        }
    finally:
        if server is not None:
            server.stop()
        rs.stop()
    if a.json:
        print(json.dumps(figures))
    else:
        for k, v in figures.items():
            print(f"{k:28} {v}")
    return figures


if __name__ == "__main__":
    main()
