"""The read API's latency and overhead, each against a direct read in the same run.

    .venv/bin/python bench/api.py [--seconds 10] [--rate 500] [--json]

1. Latest-state endpoints (ticker, book, latest trades, candle, VWAP) of a real `python -m web`
   process (uvicorn, WEB_FLOWER=0) over one keep-alive HTTP connection, paced at --rate requests
   per second (open loop: one request every 1/rate s). Baseline: the same reads straight from
   redis-py (HGETALL / ZREVRANGE) at the same pace, same Redis, same run. p50/p99 per endpoint and
   the ratio of p99s.
2. A 10,000-trade range through the API (10 pages of 1000, following `next`) against one direct
   pymongo find of the same range sorted the same way, on the MongoDB wire-protocol server of the
   tests (nx-27017; MONGODB_URI to use a real mongod instead). Median of 5 of each.

Targets (issue #17): p99 <= 5 ms and <= 2x the direct read.
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import cpu_seconds  # noqa: E402
from core import keys  # noqa: E402
from localrun.redis_server import RedisServer, free_port  # noqa: E402

INST = "BTC-USDT"
TOKEN = "bench-token-0123456789"
T0 = 1_700_000_000_000
N_RANGE = 10_000


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def seed_redis(r: Any) -> None:
    from core.settings import WorkerSettings
    from tasks import documents
    from tasks.writers.redis_state import RedisState
    from tests.workers_fixtures import book, candle, ticker, trade

    state = RedisState(r, WorkerSettings())
    for kind, recs in (
        ("tickers", [ticker()]),
        ("books", [book()]),
        ("candles", [candle()]),
        ("trades", [trade(i, ts=T0 + i) for i in range(100)]),
    ):
        good, _ = documents.split_records(kind, recs)
        state.write_many([(kind, good)])
    r.hset(
        keys.vwap_key(INST),
        mapping={
            "vwap": "35000.12",
            "ts": str(T0),
            "window_ms": "300000",
            "n": "42",
            "validated": "1",
        },
    )


def seed_mongo(db: Any) -> None:
    from tasks import documents
    from tasks.writers.mongo_history import ensure_indexes
    from tests.workers_fixtures import trade

    ensure_indexes(db)
    recs = [trade(10_000 + i, ts=T0 + i // 4) for i in range(N_RANGE)]
    good, _ = documents.split_records("trades", recs)
    docs = documents.mongo_docs("trades", good)
    for at in range(0, len(docs), 1000):
        db[keys.TRADES].insert_many(docs[at : at + 1000], ordered=False)


def paced(call, rate: float, seconds: float) -> list[float]:
    """Latencies (ms) of `call` run every 1/rate s for `seconds` (open loop, no catch-up burst)."""
    period = 1.0 / rate
    out = []
    nxt = time.perf_counter()
    end = nxt + seconds
    while nxt < end:
        now = time.perf_counter()
        if now < nxt:
            time.sleep(nxt - now)
        t = time.perf_counter()
        call()
        out.append((time.perf_counter() - t) * 1000)
        nxt += period
        if time.perf_counter() > nxt + period:  # fell behind: do not fire a burst to catch up
            nxt = time.perf_counter()
    return out


def http_getter(port: int, path: str):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Authorization": f"Bearer {TOKEN}"}

    def call() -> bytes:
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"{path}: {resp.status} {body[:200]!r}")
        return body

    return call


def start_web(env: dict[str, str], port: int, log: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "web"],
        cwd=ROOT,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/api/v1/health")
            conn.getresponse().read()
            return proc
        except OSError:
            time.sleep(0.1)
        if proc.poll() is not None:
            break
    raise SystemExit(f"web did not start; log:\n{log.read_text()[-2000:]}")


def latest_state(port: int, pid: int, r: Any, rate: float, seconds: float) -> list[dict[str, Any]]:
    direct = {
        "ticker": lambda: r.hgetall(keys.ticker(INST)),
        "book": lambda: r.hgetall(keys.books5(INST)),
        "trades/latest": lambda: r.zrevrange(keys.trades(INST), 0, 99),
        "candle": lambda: r.hgetall(keys.candle(INST, "1m")),
        "vwap": lambda: r.hgetall(keys.vwap_key(INST)),
    }
    paths = {
        "ticker": f"/api/v1/ticker/{INST}",
        "book": f"/api/v1/book/{INST}",
        "trades/latest": f"/api/v1/trades/{INST}/latest",
        "candle": f"/api/v1/candle/{INST}?bar=1m",
        "vwap": f"/api/v1/vwap/{INST}",
    }
    rows = []
    for name, path in paths.items():
        for _ in range(200):  # warm up
            direct[name]()
        cpu0 = time.process_time()
        d = paced(direct[name], rate, seconds)
        direct_cpu = (time.process_time() - cpu0) / len(d) * 1000
        # a fresh connection after the baseline (uvicorn closes one idle for 5 s)
        api_call = http_getter(port, path)
        for _ in range(200):  # warm up: connection, caches
            api_call()
        server0 = cpu_seconds(pid)
        a = paced(api_call, rate, seconds)
        server_cpu = (cpu_seconds(pid) - server0) / len(a) * 1000
        rows.append(
            {
                "endpoint": name,
                "requests": len(a),
                "api_p50_ms": round(statistics.median(a), 3),
                "api_p99_ms": round(_pct(a, 0.99), 3),
                "direct_p50_ms": round(statistics.median(d), 3),
                "direct_p99_ms": round(_pct(d, 0.99), 3),
                "p99_ratio": round(_pct(a, 0.99) / _pct(d, 0.99), 2),
                # CPU per request: the web process's (from /proc), the direct reader's own;
                # unlike latencies these hardly move with the machine's load
                "server_cpu_ms": round(server_cpu, 3),
                "direct_client_cpu_ms": round(direct_cpu, 3),
            }
        )
    return rows


def range_page(port: int, db: Any, repeats: int = 5) -> dict[str, Any]:
    from web.history import ms_to_dt

    lo, hi = T0, T0 + N_RANGE // 4

    def direct() -> int:
        flt = {"instId": INST, "dt": {"$gte": ms_to_dt(lo), "$lt": ms_to_dt(hi)}}
        return len(list(db[keys.TRADES].find(flt).sort([("dt", 1), ("_id", 1)])))

    def direct_pages() -> int:
        # the API's own queries (web/history.py read_page), straight from pymongo: what the
        # storage costs for the same 10 pages, without HTTP, FastAPI and JSON
        from web.history import read_page
        from web.params import TimeRange

        n, after = 0, None
        while True:
            docs, after = read_page(
                db[keys.TRADES], {"instId": INST}, TimeRange(lo, hi), after, 1000
            )
            n += len(docs)
            if after is None:
                return n

    def api() -> int:
        # a fresh connection per run: uvicorn closes one idle for 5 s (the direct runs between)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        n, cursor = 0, None
        while True:
            q = f"start={lo}&end={hi}&limit=1000" + (f"&cursor={cursor}" if cursor else "")
            conn.request(
                "GET", f"/api/v1/trades/{INST}?{q}", headers={"Authorization": f"Bearer {TOKEN}"}
            )
            body = orjson.loads(conn.getresponse().read())
            n += len(body["items"])
            cursor = body["next"]
            if not cursor:
                return n

    times: dict[str, list[float]] = {"direct": [], "direct_pages": [], "api": []}
    for _ in range(repeats):
        for name, fn in (("direct", direct), ("direct_pages", direct_pages), ("api", api)):
            t = time.perf_counter()
            got = fn()
            times[name].append(time.perf_counter() - t)
            assert got == N_RANGE, (name, got)
    d, a = statistics.median(times["direct"]), statistics.median(times["api"])
    dp = statistics.median(times["direct_pages"])
    return {
        "trades": N_RANGE,
        "pages": N_RANGE // 1000,
        "direct_find_ms": round(d * 1000, 1),
        "direct_pages_ms": round(dp * 1000, 1),
        "api_ms": round(a * 1000, 1),
        "ratio": round(a / d, 2),
        "ratio_to_same_pages": round(a / dp, 2),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0, help="per endpoint and per baseline")
    ap.add_argument("--rate", type=float, default=500.0, help="requests per second")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    import redis
    from pymongo import MongoClient

    from localrun.mongo_server import MongoServer

    work = Path(tempfile.mkdtemp(prefix="bench-api-"))
    rs = RedisServer()
    rs.start()
    ms = None
    uri = os.environ.get("MONGODB_URI")
    if not uri:
        ms = MongoServer(workdir=str(work / "mongo"))
        ms.start()
        uri = ms.uri
    proc = None
    try:
        r = redis.Redis.from_url(rs.url, decode_responses=True)
        seed_redis(r)
        r.hset(keys.watermark_key("trades", INST), mapping={"ts": str(T0), "id": ""})
        mongo = MongoClient(uri)
        db = mongo["bench_api"]
        db[keys.TRADES].drop()
        seed_mongo(db)
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("WEB_", "FLOWER_"))}
        env |= {
            "PYTHONPATH": str(ROOT),
            "PORT": str(port),
            "REDIS_URL": rs.url,
            "MONGODB_URI": uri,
            "MONGODB_DB": "bench_api",
            "WEB_API_TOKEN": TOKEN,
            "WEB_FLOWER": "0",
            "LOG_LEVEL": "WARNING",
        }
        proc = start_web(env, port, work / "web.log")
        load_before = os.getloadavg()[0]
        result = {
            "rate_per_s": args.rate,
            "seconds": args.seconds,
            "latest_state": latest_state(port, proc.pid, r, args.rate, args.seconds),
            "range_page": range_page(port, db),
            "load_average_1m": [round(load_before, 1), round(os.getloadavg()[0], 1)],
        }
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=20)
        if ms is not None:
            ms.stop()
        rs.stop()
    if args.json:
        print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
        return 0
    print(f"latest state at {args.rate:.0f} requests/s, {args.seconds:.0f} s each (ms)")
    print(
        f"{'endpoint':<14} {'api p50':>8} {'api p99':>8} {'redis p50':>10} {'redis p99':>10} "
        f"{'p99 x':>6} {'web cpu/req':>12} {'redis-py cpu/call':>18}"
    )
    for row in result["latest_state"]:
        print(
            f"{row['endpoint']:<14} {row['api_p50_ms']:>8} {row['api_p99_ms']:>8} "
            f"{row['direct_p50_ms']:>10} {row['direct_p99_ms']:>10} {row['p99_ratio']:>6} "
            f"{row['server_cpu_ms']:>12} {row['direct_client_cpu_ms']:>18}"
        )
    load = result["load_average_1m"]
    print(
        f"machine load average (1 min) before/after: {load[0]} / {load[1]} on {os.cpu_count()} cores"
    )
    rp = result["range_page"]
    print(
        f"range of {rp['trades']} trades: API {rp['api_ms']} ms in {rp['pages']} pages; direct "
        f"pymongo: one find {rp['direct_find_ms']} ms (x{rp['ratio']}), the API's same "
        f"{rp['pages']} page queries {rp['direct_pages_ms']} ms (x{rp['ratio_to_same_pages']})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
