"""Breaker state and backlog bytes in the workers' /metrics (Prometheus text).

The main worker process serves prometheus_client's default registry on WORKER_METRICS_PORT (0 =
off), with `HistoryCollector` added: it reads the breaker's hash and the byte counters from
Redis at scrape time, so the figures are the deployment's (every worker process shares them),
not one pool child's, and the ingest path pays nothing for them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import REGISTRY, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric

from core import contract, keys
from core import settings as settings_mod
from tasks.history.breaker import STATES, describe

log = logging.getLogger(__name__)


def _int(v: Any) -> int:
    return int(v) if v else 0


class HistoryCollector:
    def __init__(self, client: Callable[[], Any], max_bytes: int, spool_max_bytes: int):
        self.client = client
        self.max_bytes = max_bytes
        self.spool_max_bytes = spool_max_bytes

    def collect(self) -> Iterator[Metric]:
        r = self.client()
        try:
            raw = r.hgetall(keys.history_breaker(keys.MONGO_BREAKER))
            fields = {
                (k.decode() if isinstance(k, bytes) else k): (
                    v.decode() if isinstance(v, bytes) else v
                )
                for k, v in raw.items()
            }
            pending = _int(r.get(keys.HISTORY_PENDING_BYTES))
            batches = r.llen(keys.HISTORY_PENDING) + r.llen(keys.HISTORY_DRAINING)
            spool = _int(r.get(keys.DEADLETTER_SPOOL_BYTES))
            queue = r.llen(contract.HISTORY_QUEUE)
        except Exception as exc:  # noqa: BLE001 - a scrape must answer; up=0 says why
            log.warning("history metrics: Redis unreadable: %r", exc)
            yield GaugeMetricFamily("okx_history_redis_up", "Broker Redis readable", value=0)
            return
        d = describe(fields, pending, 0)
        yield GaugeMetricFamily("okx_history_redis_up", "Broker Redis readable", value=1)
        state = GaugeMetricFamily(
            "okx_history_breaker_state",
            "MongoDB breaker: 1 for its current state",
            labels=["state"],
        )
        for name in STATES:
            state.add_metric([name], 1.0 if d["state"] == name else 0.0)
        yield state
        yield GaugeMetricFamily(
            "okx_history_breaker_failures", "Consecutive MongoDB failures", value=d["failures"]
        )
        yield GaugeMetricFamily(
            "okx_history_pending_bytes", "Parked history in Redis (bytes)", value=pending
        )
        yield GaugeMetricFamily(
            "okx_history_pending_max_bytes", "HISTORY_PENDING_MAX_BYTES", value=self.max_bytes
        )
        yield GaugeMetricFamily(
            "okx_history_pending_batches", "Parked history batches", value=batches
        )
        yield GaugeMetricFamily(
            "okx_deadletter_spool_bytes", "Dead letters spooled in Redis (bytes)", value=spool
        )
        yield GaugeMetricFamily(
            "okx_deadletter_spool_max_bytes",
            "DEADLETTER_SPOOL_MAX_BYTES",
            value=self.spool_max_bytes,
        )
        yield GaugeMetricFamily(
            "okx_history_drain_queue", "Drain tasks waiting in the history queue", value=queue
        )


_served: list[int] = []


def serve(port: int, client: Callable[[], Any], registry: Any = REGISTRY) -> None:
    """Serve /metrics on `port` with the history figures (once per process)."""
    if _served:
        return
    s = settings_mod.current()
    registry.register(
        HistoryCollector(client, s.history_pending_max_bytes, s.deadletter_spool_max_bytes)
    )
    start_http_server(port, registry=registry)
    _served.append(port)
    log.info("worker /metrics on port %d", port)
