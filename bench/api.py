"""The read API's latency and overhead, each against a direct read in the same run.

    .venv/bin/python bench/api.py [--seconds 10] [--rate 500] [--json] [--skip-range]

1. Latest-state endpoints (ticker, book, latest trades, candle, VWAP) of a real `python -m web`
   process (uvicorn, WEB_FLOWER=0; the latest-state cache on, as by default; "nocache": a second
   one with WEB_STATE_CACHE_MAX=0) over one keep-alive HTTP connection, paced at --rate requests
   per second (open loop: one request every 1/rate s). Baseline: the same reads straight from
   redis-py (HGETALL / ZREVRANGE) at the same pace, same Redis, same run. Floor: a bare ASGI
   endpoint on uvicorn with the same settings (bench/asgi_hello.py), same client. The clients
   take turns in half-second blocks (bench/api_clients.py says why, and why the HTTP client is
   a raw keep-alive one; http.client is measured too). p50/p99 per endpoint, the ratio of p99s,
   CPU per request of the web process and of each client.
2. A 10,000-trade range through the API (10 pages of 1000, following `next`) against one direct
   pymongo find of the same range sorted the same way, on the MongoDB wire-protocol server of the
   tests (nx-27017; MONGODB_URI to use a real mongod instead). Median of 5 of each.

Targets (issue #17): p99 <= 5 ms and <= 2x the direct read.
"""

from __future__ import annotations

import argparse
import http.client
import os
import socket
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

from bench.api_cache import scrape_cache_metrics, write_to_visible  # noqa: E402
from bench.api_clients import RawHttp, interleaved, stdlib_http  # noqa: E402
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


def start_web(env: dict[str, str], port: int, log: Path, root: Path = ROOT) -> subprocess.Popen:
    env = env | {"PORT": str(port), "PYTHONPATH": env["PYTHONPATH"].replace(str(ROOT), str(root))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "web"],
        cwd=root,
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


def start_hello(env: dict[str, str], port: int, log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "bench.asgi_hello", str(port)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"the ASGI floor did not start; log:\n{log.read_text()[-2000:]}")


PATHS = {
    "ticker": f"/api/v1/ticker/{INST}",
    "book": f"/api/v1/book/{INST}",
    "trades/latest": f"/api/v1/trades/{INST}/latest",
    "candle": f"/api/v1/candle/{INST}?bar=1m",
    "vwap": f"/api/v1/vwap/{INST}",
}


def direct_reads(r: Any) -> dict[str, Any]:
    """The Redis read each endpoint of PATHS makes, as a call on `r`: redis-py here, the
    asyncio RespClient in bench/api_inprocess.py (its calls return awaitables)."""
    return {
        "ticker": lambda: r.hgetall(keys.ticker(INST)),
        "book": lambda: r.hgetall(keys.books5(INST)),
        "trades/latest": lambda: r.zrevrange(keys.trades(INST), 0, 99),
        "candle": lambda: r.hgetall(keys.candle(INST, "1m")),
        "vwap": lambda: r.hgetall(keys.vwap_key(INST)),
    }


def latest_state(
    servers: dict[str, tuple[int, int]], r: Any, rate: float, seconds: float
) -> list[dict[str, Any]]:
    """`servers`: (port, pid) of "api" (the latest-state cache on), "nocache" (the same web
    with WEB_STATE_CACHE_MAX=0), "floor" and optionally "before" (the same endpoints served by
    another tree, --before)."""
    direct = direct_reads(r)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    rows = []
    for name, path in PATHS.items():
        port, pid = servers["api"]
        clients = {
            "direct": (direct[name], None),
            "api": (RawHttp(port, path, auth), pid),
            "api_stdlib": (stdlib_http(port, path, auth), pid),
            "floor": (RawHttp(servers["floor"][0], "/", auth), servers["floor"][1]),
        }
        if "nocache" in servers:
            clients["nocache"] = (RawHttp(servers["nocache"][0], path, auth), servers["nocache"][1])
        if "before" in servers:
            clients["before"] = (RawHttp(servers["before"][0], path, auth), servers["before"][1])
        got = interleaved(clients, rate, seconds)
        for call, _ in clients.values():
            getattr(call, "close", lambda: None)()
        row: dict[str, Any] = {"endpoint": name, "requests": len(got["api"]["lat"])}
        for who, m in got.items():
            row[f"{who}_p50_ms"] = round(statistics.median(m["lat"]), 3)
            row[f"{who}_p99_ms"] = round(_pct(m["lat"], 0.99), 3)
            row[f"{who}_client_cpu_ms"] = round(m["client_cpu_ms"], 3)
        for who in set(got) - {"direct"}:  # CPU per request of the serving process
            row[f"{who}_server_cpu_ms"] = round(got[who]["server_cpu_ms"], 3)
        row["p99_ratio"] = round(row["api_p99_ms"] / row["direct_p99_ms"], 2)
        row["p50_ratio"] = round(row["api_p50_ms"] / row["direct_p50_ms"], 2)
        # what the API adds to the floor: a cache hit makes no Redis read; without the cache
        # (nocache) the read is one of the two hops it must make, so that is taken off too
        row["p50_over_floor_ms"] = round(row["api_p50_ms"] - row["floor_p50_ms"], 3)
        uncached = row.get("nocache_p50_ms", row["api_p50_ms"])  # --no-nocache: the api's
        over = uncached - row["floor_p50_ms"] - row["direct_p50_ms"]
        row["p50_over_floor_and_direct_ms"] = round(over, 3)
        if "before" in got:
            row["before_p99_ratio"] = round(row["before_p99_ms"] / row["direct_p99_ms"], 2)
        if "nocache" in got:
            row["nocache_p99_ratio"] = round(row["nocache_p99_ms"] / row["direct_p99_ms"], 2)
            row["nocache_p50_ratio"] = round(row["nocache_p50_ms"] / row["direct_p50_ms"], 2)
        rows.append(row)
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
    ap.add_argument("--seconds", type=float, default=10.0, help="per endpoint and per client")
    ap.add_argument("--rate", type=float, default=500.0, help="requests per second")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--skip-range", action="store_true", help="only the latest-state part")
    ap.add_argument(
        "--before",
        type=Path,
        help="another checkout (e.g. a worktree of main): its `python -m web` is measured in "
        "the same run, beside this tree's",
    )
    ap.add_argument(
        "--no-nocache",
        action="store_true",
        help="leave out the second web process with the latest-state cache off",
    )
    ap.add_argument(
        "--write-hz",
        type=float,
        default=0.0,
        help="change every latest-state key this often a second while measuring "
        "(bench/api_writer.py): the cache's misses under writes",
    )
    args = ap.parse_args()

    import redis
    from pymongo import MongoClient

    from localrun.mongo_server import MongoServer

    work = Path(tempfile.mkdtemp(prefix="bench-api-"))
    rs = RedisServer()
    rs.start()
    ms = None
    uri = os.environ.get("MONGODB_URI")
    if not uri and not args.skip_range:
        ms = MongoServer(workdir=str(work / "mongo"))
        ms.start()
        uri = ms.uri
    procs: list[subprocess.Popen] = []
    try:
        r = redis.Redis.from_url(rs.url, decode_responses=True)
        seed_redis(r)
        r.hset(keys.watermark_key("trades", INST), mapping={"ts": str(T0), "id": ""})
        db = None
        if not args.skip_range:
            db = MongoClient(uri)["bench_api"]
            db[keys.TRADES].drop()
            seed_mongo(db)
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("WEB_", "FLOWER_"))}
        # this tree first; a PYTHONPATH given to the bench stays after it (to try packages)
        path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
        env |= {
            "PYTHONPATH": path,
            "REDIS_URL": rs.url,
            "MONGODB_URI": uri or "mongodb://127.0.0.1:9/unused",
            "MONGODB_DB": "bench_api",
            "WEB_API_TOKEN": TOKEN,
            "WEB_FLOWER": "0",
            "LOG_LEVEL": "WARNING",
        }
        procs.append(start_web(env, port, work / "web.log"))  # the cache at its default
        servers = {"api": (port, procs[-1].pid)}
        if not args.no_nocache:
            nocache_port = free_port()
            nocache_env = env | {"WEB_STATE_CACHE_MAX": "0"}
            procs.append(start_web(nocache_env, nocache_port, work / "nocache.log"))
            servers["nocache"] = (nocache_port, procs[-1].pid)
        hello_port = free_port()
        procs.append(start_hello(env, hello_port, work / "hello.log"))
        servers["floor"] = (hello_port, procs[-1].pid)
        if args.before is not None:
            before_port = free_port()
            procs.append(start_web(env, before_port, work / "before.log", args.before.resolve()))
            servers["before"] = (before_port, procs[-1].pid)
        if args.write_hz > 0:
            cmd = [sys.executable, "-m", "bench.api_writer", rs.url, str(args.write_hz)]
            procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env))
        load_before = os.getloadavg()[0]
        result: dict[str, Any] = {
            "rate_per_s": args.rate,
            "seconds": args.seconds,
            "latest_state": latest_state(servers, r, args.rate, args.seconds),
            "write_hz": args.write_hz,
            "cache_metrics": scrape_cache_metrics(port, TOKEN),
            "write_to_visible": {
                who: write_to_visible(p, TOKEN, r)
                for who, (p, _) in servers.items()
                if who in ("api", "nocache")
            },
            "range_page": None if db is None else range_page(port, db),
            "load_average_1m": [round(load_before, 1), round(os.getloadavg()[0], 1)],
        }
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=20)
        if ms is not None:
            ms.stop()
        rs.stop()
    if args.json:
        print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
        return 0
    report(result, args)
    return 0


def report(result: dict[str, Any], args: argparse.Namespace) -> None:
    print(f"latest state at {args.rate:.0f} requests/s, {args.seconds:.0f} s per client (ms)")
    cols = [
        ("api p50", "api_p50_ms"),
        ("api p99", "api_p99_ms"),
        ("redis p50", "direct_p50_ms"),
        ("redis p99", "direct_p99_ms"),
        ("p99 x", "p99_ratio"),
        ("p50 x", "p50_ratio"),
        ("floor p50", "floor_p50_ms"),
        ("floor p99", "floor_p99_ms"),
        ("p50-floor", "p50_over_floor_ms"),
        ("nc-fl-redis", "p50_over_floor_and_direct_ms"),
        ("stdlib p50", "api_stdlib_p50_ms"),
        ("stdlib p99", "api_stdlib_p99_ms"),
        ("web cpu", "api_server_cpu_ms"),
        ("floor cpu", "floor_server_cpu_ms"),
        ("redis-py cpu", "direct_client_cpu_ms"),
        ("raw cli cpu", "api_client_cpu_ms"),
        ("stdlib cpu", "api_stdlib_client_cpu_ms"),
    ]
    if "nocache_p99_ms" in result["latest_state"][0]:
        cols += [
            ("nocache p50", "nocache_p50_ms"),
            ("nocache p99", "nocache_p99_ms"),
            ("nocache p99x", "nocache_p99_ratio"),
            ("nocache p50x", "nocache_p50_ratio"),
            ("nocache cpu", "nocache_server_cpu_ms"),
        ]
    if "before_p99_ms" in result["latest_state"][0]:
        cols += [
            ("before p50", "before_p50_ms"),
            ("before p99", "before_p99_ms"),
            ("before p99 x", "before_p99_ratio"),
            ("before cpu", "before_server_cpu_ms"),
        ]
    print(f"{'endpoint':<14}" + "".join(f"{title:>13}" for title, _ in cols))
    for row in result["latest_state"]:
        print(f"{row['endpoint']:<14}" + "".join(f"{row[key]:>13}" for _, key in cols))
    print(
        "(floor: a bare ASGI endpoint on the same uvicorn settings; p50-floor: API p50 less "
        "floor p50; nc-fl-redis: nocache p50 less floor p50 less redis p50; stdlib: the API through "
        "http.client; before: --before's web; cpu: per request, the serving processes' from "
        "/proc, each client's own including its pacing)"
    )
    m = result.get("cache_metrics") or {}
    if m:
        print(
            "latest-state cache of the api column: "
            + ", ".join(f"{k} {v:.0f}" for k, v in m.items() if not k.endswith("created"))
        )
    for who, w in result["write_to_visible"].items():
        print(
            f"write to visible ({who}): p50 {w['p50_ms']} ms, p99 {w['p99_ms']} ms, max "
            f"{w['max_ms']} ms over {w['writes']} writes; answers still old: "
            f"{w['stale_answers_total']} in all, at most {w['stale_answers_max']} after one write"
        )
    load = result["load_average_1m"]
    print(
        f"machine load average (1 min) before/after: {load[0]} / {load[1]} on {os.cpu_count()} cores"
    )
    rp = result["range_page"]
    if rp is None:
        return
    print(
        f"range of {rp['trades']} trades: API {rp['api_ms']} ms in {rp['pages']} pages; direct "
        f"pymongo: one find {rp['direct_find_ms']} ms (x{rp['ratio']}), the API's same "
        f"{rp['pages']} page queries {rp['direct_pages_ms']} ms (x{rp['ratio_to_same_pages']})"
    )


if __name__ == "__main__":
    raise SystemExit(main())
