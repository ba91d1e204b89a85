"""HTTP /healthz (JSON) and /metrics (Prometheus text) for the feeder, on a stdlib server thread.

/healthz answers 200 with `"status": "ok"` when the snapshot has no problems (snapshot.py's
`problems()`: every configured connection live or back within FEEDER_UNHEALTHY_AFTER, no
subscription silent past its staleness window, every supervised thread up and not restarting in
a loop, the broker and the ledger's Redis answering, parse errors under their rate), else 503
with `"status": "degraded"` and the problems, so an uptime check or an orchestrator can use the
status code alone. Its `data` block says whether data is flowing:
the age of the freshest message over all subscriptions, frames received, records published.

Both read one `FeederSnapshot`, taken when the request comes (the feeder hands in the callable
that takes it), so the hot path pays nothing and this module knows none of the feeder's parts.
Metrics are the snapshot's counters, plus a publish-latency histogram observed once per batch
(socket receive of the batch's oldest record -> publish done).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from collector.snapshot import FeederSnapshot
from collector.supervisor import Supervisor

log = logging.getLogger("collector.health")

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1, 5, 30)

SnapshotSource = Callable[[], FeederSnapshot]


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    c = CounterMetricFamily(name, doc)
    c.add_metric([], value)
    return c


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    g = GaugeMetricFamily(name, doc)
    g.add_metric([], value)
    return g


def snapshot_metrics(snap: FeederSnapshot) -> Iterator[Metric]:
    """Every feeder metric but the latency histogram, from one snapshot."""
    members = GaugeMetricFamily(
        "feeder_shard_feeders_live",
        "Live feeders of this feeder's shard (as of its last heartbeat); alert when it is 1 and "
        "feeder_shard_feeders_known is 2 or more",
        labels=["shard"],
    )
    members.add_metric([snap.shard], sum(1 for up in snap.shard_members.values() if up))
    yield members
    known = GaugeMetricFamily(
        "feeder_shard_feeders_known",
        "Feeders the shard has had (a clean stop leaves)",
        labels=["shard"],
    )
    known.add_metric([snap.shard], len(snap.shard_members))
    yield known
    age = GaugeMetricFamily(
        "feeder_subscription_last_message_age_seconds",
        "Seconds since the last data frame of a subscription",
        labels=["endpoint", "channel", "inst"],
    )
    state = GaugeMetricFamily(
        "feeder_connection_live", "1 when the connection is live", labels=["connection"]
    )
    for conn in snap.connections:
        state.add_metric([conn.name], 1.0 if conn.live else 0.0)
        for a in conn.ages:
            age.add_metric([conn.endpoint, a.channel, a.inst], a.age_s)
    yield age
    yield state
    yield _counter("feeder_frames", "WebSocket frames received", snap.frames)
    c = CounterMetricFamily(
        "feeder_messages", "Data frames received per channel", labels=["channel"]
    )
    for ch, n in snap.messages_by_channel.items():
        c.add_metric([ch], n)
    yield c
    c = CounterMetricFamily(
        "feeder_bad_frames", "Malformed or unknown frames by reason", labels=["kind", "reason"]
    )
    for r, n in snap.parse_errors.items():
        c.add_metric(["parse_error", r], n)
    for r, n in snap.unknown_frames.items():
        c.add_metric(["unknown", r], n)
    yield c
    c = CounterMetricFamily("feeder_book_resyncs", "Book resyncs by cause", labels=["cause"])
    for r, n in snap.book_resyncs.items():
        c.add_metric([r], n)
    yield c
    yield _counter("feeder_duplicate_trades", "Trades dropped as duplicates", snap.duplicate_trades)
    yield _counter(
        "feeder_reconnects", "Connection losses followed by a reconnect", snap.reconnects
    )
    yield _counter("feeder_gaps", "Gaps written to the ledger", snap.gaps_written)
    g = GaugeMetricFamily(
        "feeder_publish_backlog", "Records waiting in the outbox", labels=["kind"]
    )
    for k, n in snap.backlog_by_kind.items():
        g.add_metric([k], n)
    yield g
    yield _counter(
        "feeder_published_records", "Records published to the broker", snap.published_records
    )
    yield _counter(
        "feeder_dropped_records", "Records dropped past the outbox bound", snap.dropped_records
    )
    yield _gauge(
        "feeder_broker_queue_depth",
        "Ingest tasks in the broker queue right after the last publish",
        snap.broker_queue_depth,
    )
    yield _counter(
        "feeder_publish_lingers",
        "Publish cycles delayed to batch more because workers lagged",
        snap.publish_lingers,
    )
    yield _counter(
        "feeder_claimed_by_peer_records",
        "Records left out at publish: the shard's other feeder had pushed them (claims)",
        snap.claimed_by_peer,
    )
    role = GaugeMetricFamily(
        "feeder_publish_role",
        "1 for this feeder's publish role: alone (no live peer), leader, standby",
        labels=["role"],
    )
    for r in ("alone", "leader", "standby"):
        role.add_metric([r], 1.0 if snap.publish_role == r else 0.0)
    yield role
    yield _gauge(
        "feeder_broker_up", "1 when the last publish succeeded", 1.0 if snap.broker_ok else 0.0
    )
    up = GaugeMetricFamily(
        "feeder_thread_up", "1 when the supervised thread is running", labels=["thread"]
    )
    restarts = CounterMetricFamily(
        "feeder_thread_restarts", "Restarts after an unexpected exception", labels=["thread"]
    )
    looping = GaugeMetricFamily(
        "feeder_thread_looping", "1 when the thread is restarting in a loop", labels=["thread"]
    )
    for t in snap.threads:
        up.add_metric([t.name], 1.0 if t.up else 0.0)
        restarts.add_metric([t.name], t.restarts)
        looping.add_metric([t.name], 1.0 if t.looping else 0.0)
    yield up
    yield restarts
    yield looping
    yield _gauge(
        "feeder_parse_errors_last_minute",
        "Parse errors over the last minute (health degrades past FEEDER_PARSE_ERRORS_PER_MIN)",
        snap.parse_errors_last_min,
    )


class _SnapshotCollector:
    """A prometheus_client custom collector: one snapshot per scrape."""

    def __init__(self, source: SnapshotSource) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        return snapshot_metrics(self.source())


class Metrics:
    def __init__(self, source: SnapshotSource) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.latency = Histogram(
            "feeder_publish_latency_seconds",
            "Socket receive -> published, oldest record of each batch",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_SnapshotCollector(source))

    def render(self) -> bytes:
        return generate_latest(self.registry)


def data_summary(status: dict[str, Any], frames: int, published: int) -> dict[str, Any]:
    """Is data flowing? The freshest last-message age over every subscription (None: no data
    yet)."""
    ages = [
        s["age_s"]
        for c in status.get("connections", ())
        for s in c.get("subscriptions", {}).values()
        if s.get("age_s") is not None
    ]
    return {
        "last_message_age_s": min(ages) if ages else None,
        "subscriptions_with_data": len(ages),
        "frames": frames,
        "published_records": published,
    }


def healthz(snap: FeederSnapshot) -> dict[str, Any]:
    status = snap.status()  # includes "problems": the verdict's reasons
    problems = status["problems"]
    frames = sum(c.get("frames", 0) for c in status["connections"])
    return {
        "status": "degraded" if problems else "ok",
        "feeder": snap.feeder_id,
        "uptime_s": round(snap.uptime_s, 1),
        "backlog": snap.backlog,
        "data": data_summary(status, frames, snap.published_records),
        **status,
    }


class _Server(ThreadingHTTPServer):
    """The stdlib server, with the supervisor's checkpoint in its loop and request errors
    logged (rate-limited by the supervisor's logger, counted) instead of printed to stderr."""

    daemon_threads = True
    checkpoint: Callable[[], None] = staticmethod(lambda: None)
    request_errors = 0

    def service_actions(self) -> None:
        self.checkpoint()

    def handle_error(self, request: Any, client_address: Any) -> None:
        self.request_errors += 1
        if self.request_errors == 1 or self.request_errors % 100 == 0:
            log.exception(
                "health request from %s failed (%d so far)", client_address[0], self.request_errors
            )


class HealthServer:
    def __init__(
        self,
        host: str,
        port: int,
        source: SnapshotSource,
        metrics: Metrics,
        supervisor: Supervisor | None = None,
    ) -> None:
        self.host, self.port = host, port
        self.source, self.metrics = source, metrics
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.supervisor = supervisor or Supervisor(self._stopping)

    def _serve(self) -> None:
        server = self._server
        assert server is not None, "start() binds the server before the thread runs"
        self.supervisor.run("health", server.serve_forever, stopping=self._stopping)

    def start(self) -> None:
        source, metrics = self.source, self.metrics

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - stdlib name
                if self.path.startswith("/healthz"):
                    report = healthz(source())
                    code = 200 if report["status"] == "ok" else 503
                    body, ctype = orjson.dumps(report), "application/json"
                elif self.path.startswith("/metrics"):
                    body, ctype, code = metrics.render(), "text/plain; version=0.0.4", 200
                else:
                    body, ctype, code = b"not found\n", "text/plain", 404
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:  # quiet: no line per scrape
                pass

        self._server = _Server((self.host, self.port), Handler)
        self._server.checkpoint = self.supervisor.handle("health")
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._serve, name="health", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
