"""GET /metrics: the web process's counters in Prometheus text, read at scrape time.

The latest-state cache's (web/state_cache.py: hits, misses, bypassed reads, invalidations,
flushes, discarded replies, evictions, entries, bytes, whether its channel is live) and the
lean path's answers. Behind the API's credentials (web/app.py gives AuthGate this path): a
scraper sends the Bearer token or Basic pair. Nothing here is a secret, but nothing here needs
to be public either.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

PATH = "/metrics"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

router = APIRouter()

_COUNTERS = {
    "hits": "Latest-state answers served from the cache",
    "misses": "Latest-state lookups not in the cache (read from Redis, then kept)",
    "bypassed": "Latest-state reads straight from Redis: the invalidation channel not known alive",
    "invalidations": "Keys Redis said changed (each drops the bodies built from it)",
    "flushes": "Whole-cache flushes: channel lost, FLUSHALL/FLUSHDB, tracking reset",
    "discarded": "Replies not kept: their key was invalidated while the read was in flight",
    "evictions": "Entries evicted to stay within WEB_STATE_CACHE_MAX or the byte budget",
}


def cache_metrics(stats: dict[str, Any] | None, lean_answered: int) -> Iterator[Metric]:
    lean = CounterMetricFamily("web_lean_answered", "Latest-state GETs answered by the lean path")
    lean.add_metric([], lean_answered)
    yield lean
    enabled = GaugeMetricFamily("web_state_cache_enabled", "1 when the cache is configured")
    enabled.add_metric([], 0 if stats is None else 1)
    yield enabled
    if stats is None:
        return
    for name, doc in _COUNTERS.items():
        c = CounterMetricFamily(f"web_state_cache_{name}", doc)
        c.add_metric([], stats[name])
        yield c
    for name, doc in (
        ("entries", "Bodies in the cache"),
        ("bytes", "Bytes of the bodies in the cache"),
        ("live", "1 while the invalidation channel is up (entries may be served)"),
    ):
        g = GaugeMetricFamily(f"web_state_cache_{name}", doc)
        g.add_metric([], float(stats[name]))
        yield g


class _Collector:
    def __init__(self, app: Any) -> None:
        self.app = app

    def collect(self) -> Iterator[Metric]:
        cache = self.app.state.state_cache
        stats = None if cache is None else cache.stats()
        yield from cache_metrics(stats, self.app.state.counters["lean_answered"])


@router.get(PATH, include_in_schema=False)
def metrics(request: Request) -> Response:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(request.app))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE)
