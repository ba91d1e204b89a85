"""The read API's latest-state path called in-process: where a request's CPU goes, and the
collector's pauses, without HTTP or a second process in the way.

    .venv/bin/python bench/api_inprocess.py [--requests 20000] [--path /api/v1/ticker/BTC-USDT]
    .venv/bin/python bench/api_inprocess.py --profile     # cProfile of the app, top 25

One redis-server; the app as `python -m web` builds it (web.app.create_app over
Stores.from_settings' clients: RespClient), called as uvicorn calls it (scope, receive, send).
Printed: CPU per request of the whole app: the lean path answering from the latest-state cache
(web/state_cache.py), the lean path reading Redis (cache off), the FastAPI route (lean=False),
and of the bare Redis read the endpoint makes, so app minus read is
what the Python layers cost; then the garbage collector's passes during the lean requests, per
generation (count, longest): a request that left cyclic garbage or kept objects would show here
as collector pauses in the p99.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import pstats
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.api import INST, TOKEN, direct_reads, seed_redis  # noqa: E402
from core import keys  # noqa: E402
from localrun.redis_server import RedisServer  # noqa: E402


def _scope(path: str) -> dict[str, Any]:
    p, _, q = path.partition("?")
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": p,
        "raw_path": p.encode(),
        "query_string": q.encode(),
        "root_path": "",
        "headers": [(b"host", b"x"), (b"authorization", f"Bearer {TOKEN}".encode())],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 2),
        "state": {},
    }


def _caller(app: Any, path: str) -> Any:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def once() -> None:
        sent.clear()
        await app(_scope(path), receive, send)
        if sent[0]["status"] != 200:
            raise RuntimeError(f"{path}: {sent[0]['status']} {sent[-1].get('body', b'')[:200]!r}")

    return once


async def _cpu_us(fn: Any, n: int) -> float:
    for _ in range(300):
        await fn()
    t = time.process_time()
    for _ in range(n):
        await fn()
    return (time.process_time() - t) / n * 1e6


async def _gc_passes(fn: Any, n: int) -> dict[int, list[float]]:
    passes: dict[int, list[float]] = {0: [], 1: [], 2: []}
    started = [0.0]

    def watch(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            passes[info["generation"]].append((time.perf_counter() - started[0]) * 1000)

    gc.callbacks.append(watch)
    try:
        for _ in range(n):
            await fn()
    finally:
        gc.callbacks.remove(watch)
    return passes


async def run(args: argparse.Namespace, url: str) -> None:
    import mongomock
    import redis

    from web.app import create_app
    from web.auth import Credentials
    from web.stores import Stores, async_redis_client

    r = redis.Redis.from_url(url, decode_responses=True)
    seed_redis(r)
    r.hset(keys.watermark_key("trades", INST), mapping={"ts": "1", "id": ""})
    creds = Credentials((), TOKEN.encode())
    apps = {}
    for name, lean, cache_max in (("cached", True, 4096), ("lean", True, 0), ("fastapi", False, 0)):
        stores = Stores.of(r, mongomock.MongoClient()["x"], None, async_redis_client(url, 5.0))
        app = create_app(stores, creds, lean=lean, state_cache_max=cache_max)
        apps[name] = _caller(app, args.path)
    kind = args.path.split("/")[3]
    read = direct_reads(async_redis_client(url, 5.0))["trades/latest" if kind == "trades" else kind]
    n = args.requests // 4
    for name, fn in (
        ("app, lean path + cache", apps["cached"]),
        ("app, lean path", apps["lean"]),
        ("app, FastAPI route", apps["fastapi"]),
    ):
        print(f"{name:<22} {await _cpu_us(fn, n):7.1f} us CPU a request")
    print(f"{'the Redis read alone':<22} {await _cpu_us(read, n):7.1f} us CPU (RespClient)")
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(n):
            await apps["lean"]()
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
        return
    passes = await _gc_passes(apps["lean"], args.requests)
    line = ", ".join(
        f"gen{g}: {len(v)} passes, longest {max(v, default=0):.2f} ms" for g, v in passes.items()
    )
    print(f"garbage collector over {args.requests} lean requests: {line}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--path", default=f"/api/v1/ticker/{INST}")
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    with RedisServer() as rs:
        asyncio.run(run(args, rs.url))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
