"""bench/api.py's figures of the latest-state cache: its counters, and how soon a write shows.

`scrape_cache_metrics(port)`: the cache's counters from the web's /metrics (web/metrics.py).

`write_to_visible(port, r, n)`: the staleness the cache adds, measured end to end. n times:
write a new ticker `last` straight to Redis (HSET, as the workers' script ends), then from the
moment the write returned, ask the API for the ticker back to back until the new value comes;
recorded: the time from the write's return to the first answer holding it (ms) and how many
answers before it were still the old value. Without the cache (the `nocache` web) every first
answer is the new value, so that column is the HTTP round trip alone; the cache's delay beyond
it is the invalidation's delivery (docs/read-api.md, "Staleness bound").
"""

from __future__ import annotations

import http.client
import statistics
import time
from typing import Any

from bench.api_clients import RawHttp
from core import keys

INST = "BTC-USDT"


def scrape_cache_metrics(port: int, token: str) -> dict[str, float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/metrics", headers={"Authorization": f"Bearer {token}"})
    text = conn.getresponse().read().decode()
    found = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name.startswith("web_state_cache_") and not name.endswith("_created"):
            found[name.removeprefix("web_state_cache_").removesuffix("_total")] = float(value)
    return found


def write_to_visible(port: int, token: str, r: Any, n: int = 300) -> dict[str, Any]:
    client = RawHttp(port, f"/api/v1/ticker/{INST}", {"Authorization": f"Bearer {token}"})
    key = keys.ticker(INST)
    delays, stale = [], []
    try:
        for _ in range(50):  # warm: the connection, the cache entry
            client()
        for i in range(n):
            value = f"4{i:05d}.5"
            want = f'"last":"{value}"'.encode()
            r.hset(key, "last", value)
            t0 = time.perf_counter()
            old = 0
            while want not in client():
                old += 1
                if old > 10_000:
                    raise RuntimeError("the new value never came")
            delays.append((time.perf_counter() - t0) * 1000)
            stale.append(old)
            time.sleep(0.002)  # let the ping and the re-read settle, as between real requests
    finally:
        client.close()
    s = sorted(delays)
    return {
        "writes": n,
        "p50_ms": round(statistics.median(delays), 3),
        "p99_ms": round(s[min(n - 1, int(0.99 * n))], 3),
        "max_ms": round(s[-1], 3),
        "stale_answers_total": sum(stale),
        "stale_answers_max": max(stale),
    }
