"""HTTP /healthz (JSON) and /metrics (Prometheus text) for the feeder, on a stdlib server thread.

/healthz answers 200 with `"status": "ok"` when every connection is live and the broker and the
ledger's Redis answer, else 503 with `"status": "degraded"` and the problems, so an uptime check
or an orchestrator can use the status code alone. Its `data` block says whether data is flowing:
the age of the freshest message over all subscriptions, frames received, records published.

Metrics come from the counters the feeder keeps anyway (read at scrape time by a custom
collector, so the hot path pays nothing), plus a publish-latency histogram observed once per
batch (socket receive of the batch's oldest record -> publish done).
"""
from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

import orjson
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

if TYPE_CHECKING:
    from collector.feeder import Feeder

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1, 5, 30)


class _FeederCollector:
    def __init__(self, feeder: "Feeder") -> None:
        self.f = feeder

    def collect(self):
        f = self.f
        p = f.pipeline
        now = time.monotonic()
        with f.lock:
            by_channel = dict(p.by_channel)
            parse_errors = dict(p.parse_errors)
            unknown = dict(p.unknown)
            resyncs = dict(p.resync_count)
            frames = p.frames
            dups = p.duplicates
        age = GaugeMetricFamily("feeder_subscription_last_message_age_seconds",
                                "Seconds since the last data frame of a subscription",
                                labels=["endpoint", "channel", "inst"])
        state = GaugeMetricFamily("feeder_connection_live", "1 when the connection is live",
                                  labels=["connection"])
        for d in list(f.drivers):
            if not d.is_alive():
                continue
            state.add_metric([d.name], 1.0 if d.state.phase == "live" else 0.0)
            for key, t in list(d.state.last_msg.items()):
                age.add_metric([d.endpoint, key[0], key[1] or key[2] or ""], now - t)
        yield age
        yield state
        c = CounterMetricFamily("feeder_frames", "WebSocket frames received")
        c.add_metric([], frames)
        yield c
        c = CounterMetricFamily("feeder_messages", "Data frames received per channel",
                                labels=["channel"])
        for ch, n in by_channel.items():
            c.add_metric([ch], n)
        yield c
        c = CounterMetricFamily("feeder_bad_frames", "Malformed or unknown frames by reason",
                                labels=["kind", "reason"])
        for r, n in parse_errors.items():
            c.add_metric(["parse_error", r], n)
        for r, n in unknown.items():
            c.add_metric(["unknown", r], n)
        yield c
        c = CounterMetricFamily("feeder_book_resyncs", "Book resyncs by cause", labels=["cause"])
        for r, n in resyncs.items():
            c.add_metric([r], n)
        yield c
        c = CounterMetricFamily("feeder_duplicate_trades", "Trades dropped as duplicates")
        c.add_metric([], dups)
        yield c
        c = CounterMetricFamily("feeder_reconnects", "Connection losses followed by a reconnect")
        c.add_metric([], f.reconnects)
        yield c
        led = f.ledger
        c = CounterMetricFamily("feeder_gaps", "Gaps written to the ledger")
        c.add_metric([], led.gaps_written if led else 0)
        yield c
        pub = f.publisher
        g = GaugeMetricFamily("feeder_publish_backlog", "Records waiting in the outbox",
                              labels=["kind"])
        for k, n in f.outbox.backlog_by_kind().items():
            g.add_metric([k], n)
        yield g
        c = CounterMetricFamily("feeder_published_records", "Records published to the broker")
        c.add_metric([], pub.published if pub else 0)
        yield c
        c = CounterMetricFamily("feeder_dropped_records", "Records dropped past the outbox bound")
        c.add_metric([], f.outbox.dropped)
        yield c
        g = GaugeMetricFamily("feeder_broker_queue_depth",
                              "Ingest tasks in the broker queue right after the last publish")
        g.add_metric([], pub.queue_depth if pub else 0)
        yield g
        c = CounterMetricFamily("feeder_publish_lingers",
                                "Publish cycles delayed to batch more because workers lagged")
        c.add_metric([], pub.lingers if pub else 0)
        yield c
        g = GaugeMetricFamily("feeder_broker_up", "1 when the last publish succeeded")
        g.add_metric([], 1.0 if (pub is None or pub.broker_ok) else 0.0)
        yield g


class Metrics:
    def __init__(self, feeder: "Feeder") -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.latency = Histogram("feeder_publish_latency_seconds",
                                 "Socket receive -> published, oldest record of each batch",
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.registry.register(_FeederCollector(feeder))

    def render(self) -> bytes:
        return generate_latest(self.registry)


def data_summary(status: dict, frames: int, published: int) -> dict:
    """Is data flowing? The freshest last-message age over every subscription (None: no data yet)."""
    ages = [s["age_s"] for c in status.get("connections", ())
            for s in c.get("subscriptions", {}).values() if s.get("age_s") is not None]
    return {"last_message_age_s": min(ages) if ages else None,
            "subscriptions_with_data": len(ages), "frames": frames, "published_records": published}


def healthz(feeder: "Feeder") -> dict:
    ok, problems = feeder.healthy()
    status = feeder.status()
    published = feeder.publisher.published if feeder.publisher is not None else 0
    frames = sum(c.get("frames", 0) for c in status["connections"])
    return {"status": "ok" if ok else "degraded", "problems": problems,
            "feeder": feeder.settings.feeder_id,
            "uptime_s": round(time.monotonic() - feeder.started, 1),
            "backlog": feeder.outbox.backlog(), "data": data_summary(status, frames, published),
            **status}


class HealthServer:
    def __init__(self, host: str, port: int, feeder: "Feeder") -> None:
        self.host, self.port, self.feeder = host, port, feeder
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        feeder = self.feeder

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - stdlib name
                if self.path.startswith("/healthz"):
                    report = healthz(feeder)
                    code = 200 if report["status"] == "ok" else 503
                    body, ctype = orjson.dumps(report), "application/json"
                elif self.path.startswith("/metrics"):
                    body, ctype, code = feeder.metrics.render(), "text/plain; version=0.0.4", 200
                else:
                    body, ctype, code = b"not found\n", "text/plain", 404
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:  # quiet: no line per scrape
                pass

        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="health",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
