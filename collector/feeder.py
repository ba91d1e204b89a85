"""The feeder process: builds and runs every part, and stops them in order.

Threads:
    conn-<endpoint>[-n]  one per WebSocket connection (driver.py; a 64008 replacement gets its
                         own): reads frames, feeds the pipeline (under one lock)
    publisher            outbox -> Celery tasks (publisher.py)
    ledger               gaps, watermarks, heartbeat -> Redis (ledger.py)
    rest                 REST book snapshots for resyncs, off the reader threads (resync.py)
    health               HTTP /healthz and /metrics (health.py), from `Feeder.snapshot()`
The main thread (cli.py) waits for SIGTERM/SIGINT and then calls `stop()`.
Every one of them runs under `self.supervisor` (supervisor.py): an unexpected exception is
logged, counted and the thread restarted with backoff; `snapshot()` reports each thread.
"""

from __future__ import annotations

import itertools
import logging
import random
import socket
import sys
import threading
import time
from typing import Any

import redis

from collector.driver import Driver
from collector.health import HealthServer, Metrics
from collector.identity import claim_id
from collector.ledger import Ledger
from collector.outbox import Outbox
from collector.pipeline import LogLimiter, Pipeline
from collector.publisher import Publisher
from collector.recorder import Recorder
from collector.resync import BookResync
from collector.snapshot import FeederSnapshot, RateWindow
from collector.supervisor import Supervisor
from core.redis_clients import tls_kwargs
from core.rest_limits import shared_limits
from core.settings import FeederSettings as Settings
from okx.backoff import new_connection_limit
from okx.channels import endpoint_for
from okx.clock import now_ms as clock_ms
from okx.records import ParseError
from okx.rest.client import RestClient
from okx.ws.subscriptions import plan

log = logging.getLogger("collector.feeder")

SWITCH_INTERVAL_S = 0.0005


class Feeder:
    """Builds and runs everything. `start()` does the I/O; the constructor only stores."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.rng = random.Random()
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.supervisor = Supervisor(self.stopping)
        self._ids = itertools.count(1)
        self._conn_limit = new_connection_limit()
        self._conn_lock = threading.Lock()
        self.outbox = Outbox(settings.batch_max, settings.buffer_max)
        self.pipeline = Pipeline(
            self.outbox.put,
            depth_stored=settings.book_depth_stored,
            full_every_ms=int(settings.full_book_every_s * 1000),
        )
        self.recorder: Recorder | None = None
        self.drivers: list[Driver] = []
        self.publisher: Publisher | None = None
        self.ledger: Ledger | None = None
        self.health: HealthServer | None = None
        # Book bootstraps are paced with every other process on this Redis (OKX counts per IP),
        # and retried once only: the pipeline has its own retry and resubscribe fallback.
        self.rest = RestClient(
            settings.rest_url,
            credentials=settings.credentials,
            demo=settings.demo,
            limits=shared_limits(
                settings.redis_url,
                factor=settings.rest_rate_factor,
                fallback_share=settings.rest_fallback_share,
            ),
            max_retries=1,
        )
        self.reconnects = 0
        self.started = time.monotonic()
        self._bad_log = LogLimiter(10.0)
        self._resync: BookResync | None = None
        self.metrics: Metrics | None = None
        self._parse_rate = RateWindow(60.0)
        self._parse_rate.add(self.started, 0)
        self._frame_rate = RateWindow(60.0)
        self._frame_rate.add(self.started, 0)

    # ----- what the connection threads ask of the process (driver.DriverHost) ---------------------

    def next_id(self) -> int:
        return next(self._ids)

    def connection_wait(self, now: float) -> float:
        """OKX allows 3 new connections per second per IP, shared by all connections."""
        with self._conn_lock:
            wait = self._conn_limit.wait(now)
            if wait <= 0:
                self._conn_limit.record(now)
            return wait

    def bad_frame(self, res: Any, now: float) -> None:
        kind = "parse error" if type(res) is ParseError else "unknown frame"
        category = f"{kind}: {res.reason.split(':', 1)[0][:48]}"
        ok, suppressed = self._bad_log.allow(category, now)
        if ok:
            more = f" (+{suppressed} more since the last line)" if suppressed else ""
            log.warning("%s: %s | %.120r%s", kind, res.reason[:200], res.raw, more)

    def replace(self, old: Driver) -> None:
        """64008: open a replacement for `old`; it retires `old` once it is live."""
        if old.successor is not None and old.successor.is_alive():
            return
        args = [sub.arg for sub in old.state.subs.values()]
        new = Driver(
            self,
            old.endpoint,
            args,
            old.state.login,
            f"conn-{old.endpoint}-{self.next_id()}",
            predecessor=old,
        )
        old.successor = new
        self.drivers.append(new)
        new.start()

    # ----- lifecycle -----------------------------------------------------------------------------

    def start(self) -> Feeder:
        s = self.settings
        # The readers rarely block while frames are queued in the socket; a shorter GIL switch
        # interval (default 5 ms) lets the publisher thread in sooner: lower socket->publish
        # latency.
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        self._claim_id()

        self.metrics = Metrics(self.snapshot)
        if s.record_path:
            self.recorder = Recorder(s.record_path)
        self.publisher = Publisher(
            self.outbox,
            s.redis_url,
            s.feeder_id,
            shard=s.shard,
            on_gaps=self._overflow_gaps,
            latency=self.metrics.latency,
            linger_max_s=s.linger_max_ms / 1000,
            supervisor=self.supervisor,
            claim_ttl_s=s.claim_ttl_s,
            standby_delay_s=s.standby_delay_ms / 1000,
            shard_view=self._shard_view,
        )
        the_plan = plan(s.channels, s.instruments)
        keys = []
        for endpoint in the_plan.endpoints():
            for a in the_plan.args[endpoint]:
                keys.append((a["channel"], a.get("instId") or a.get("instType") or ""))
        self.ledger = Ledger(
            s.redis_url,
            s.feeder_id,
            keys,
            shard=s.shard,
            max_silence_ms=int(s.stale_after_s * 1000),
            pull=self._pull,
            on_gap_id=self.publisher.request_repair,
            status=self.status,
            supervisor=self.supervisor,
        )
        self.publisher.start()
        self._resync = BookResync(
            self.pipeline,
            self.lock,
            self.rest,
            self.stopping,
            resubscribe=self._resubscribe,
            supervisor=self.supervisor,
        )
        self._resync.start()
        for endpoint in the_plan.endpoints():
            d = Driver(
                self,
                endpoint,
                the_plan.args[endpoint],
                the_plan.login[endpoint],
                f"conn-{endpoint}",
            )
            self.drivers.append(d)
            d.start()
        # After the connections: the ledger's first cycle writes the heartbeat at once, and
        # `collector status` would show a feeder with no connections until the next (5 s on).
        # Records fed before that cycle wait in the pipeline; the startup-gap check reads the
        # previous run's watermarks before comparing them with this run's first records.
        self.ledger.start()
        if s.health_port:
            self.health = HealthServer(
                s.health_host, s.health_port, self.snapshot, self.metrics, self.supervisor
            )
            self.health.start()
        log.info(
            "feeder %s started: %d connections, %d subscriptions",
            s.feeder_id,
            len(self.drivers),
            len(keys),
        )
        return self

    def _claim_id(self) -> None:
        """Refuse to run beside a live feeder with the same FEEDER_ID (collector/identity.py).
        Redis down: nothing can be checked; the feeder starts and buffers as it always did."""
        s = self.settings
        client = redis.Redis.from_url(
            s.redis_url, socket_timeout=2, socket_connect_timeout=2, **tls_kwargs(s.redis_url)
        )
        try:
            claim_id(
                client,
                s.feeder_id,
                host=socket.gethostname(),
                wait_s=s.id_wait_s,
                clock_ms=clock_ms,
            )
        except redis.RedisError as exc:
            log.warning("cannot check that FEEDER_ID %s is free (%s): starting", s.feeder_id, exc)
        finally:
            client.close()

    def stop(self, timeout: float = 9.0) -> None:
        """Stop reading, flush every batch and the watermarks. Bounded by `timeout`."""
        deadline = time.monotonic() + timeout
        log.info("feeder stopping: flushing %d queued records", self.outbox.backlog())
        self.stopping.set()
        for d in list(self.drivers):
            d.join(max(0.1, min(1.5, deadline - time.monotonic())))
        if self.recorder is not None:
            self.recorder.close()
        if self.publisher is not None and self.publisher.is_alive():
            self.publisher.flush(max(0.5, deadline - time.monotonic() - 2.0))
        if self.ledger is not None and self.ledger.is_alive():
            self.ledger.stop(max(0.5, deadline - time.monotonic()))
        if self.health is not None:
            self.health.stop()
        log.info(
            "feeder stopped: %d records published",
            self.publisher.published if self.publisher else 0,
        )

    # ----- wiring between the parts --------------------------------------------------------------

    def _overflow_gaps(self, gaps: list) -> None:
        with self.lock:
            self.pipeline.gaps.extend(gaps)

    def _pull(self, ledger: Ledger) -> None:
        """The ledger's cycle: the pipeline's new gaps and its watermarks, copied under the lock."""
        # The watermarks of what the broker accepted, not of what the pipeline saw: a record
        # still in the outbox at a crash or a stop is then inside the next start's startup gap.
        # Read BEFORE the gaps: a mark past a gap then always comes with that gap (coverage,
        # collector/coverage.py).
        pub = self.publisher
        marks = dict(pub.marks) if pub is not None else {}
        with self.lock:
            p = self.pipeline
            gaps = list(p.gaps)
            p.gaps.clear()
            first = dict(p.first)
        if gaps:
            ledger.add_gaps(gaps)
        ledger.marks = marks
        ledger.first = first

    def _resubscribe(self, key: tuple) -> None:
        """A book the REST resync gave up on: every running connection of its endpoint
        resubscribes it (only the one that carries it has the subscription)."""
        endpoint = endpoint_for(key[0])
        for d in list(self.drivers):
            if d.endpoint == endpoint and d.is_alive() and not d.retired:
                d.resubscribe(key)

    def _shard_view(self) -> dict[str, bool]:
        """The shard's feeders (id -> live) as of the ledger's last heartbeat, for the
        publisher's claims (collector/claims.py), this feeder live in it."""
        ledger = getattr(self, "ledger", None)  # the publisher starts before the ledger exists
        members = dict(ledger.shard_members) if ledger is not None else {}
        members[self.settings.feeder_id] = True
        return members

    # ----- what health and the heartbeat read ----------------------------------------------------

    def snapshot(self) -> FeederSnapshot:
        """One reading of every part, for /healthz, /metrics and the heartbeat."""
        now = time.monotonic()
        p = self.pipeline
        with self.lock:
            frames = p.frames
            by_channel = dict(p.by_channel)
            parse_errors = dict(p.parse_errors)
            unknown = dict(p.unknown)
            resyncs = dict(p.resync_count)
            duplicates = p.duplicates
            parse_last_min = self._parse_rate.add(now, sum(parse_errors.values()))
            frames_last_min = self._frame_rate.add(now, frames)
        # Every configured connection: a retired one (64008, replaced) only while it winds
        # down; one whose thread ended any other way stays in the list as "dead".
        conns = tuple(
            d.snapshot(now)
            for d in list(self.drivers)
            if d.is_alive() or (not d.retired and not self.stopping.is_set())
        )
        pub, led = self.publisher, self.ledger
        return FeederSnapshot(
            feeder_id=self.settings.feeder_id,
            uptime_s=now - self.started,
            connections=conns,
            frames=frames,
            messages_by_channel=by_channel,
            parse_errors=parse_errors,
            unknown_frames=unknown,
            book_resyncs=resyncs,
            duplicate_trades=duplicates,
            reconnects=self.reconnects,
            backlog_by_kind=self.outbox.backlog_by_kind(),
            dropped_records=self.outbox.dropped,
            published_records=pub.published if pub else 0,
            broker_queue_depth=pub.queue_depth if pub else 0,
            publish_lingers=pub.lingers if pub else 0,
            claimed_by_peer=pub.claimed_by_peer if pub else 0,
            publish_role=pub.role if pub else "alone",
            broker_ok=pub.broker_ok if pub else True,
            gaps_written=led.gaps_written if led else 0,
            ledger_redis_ok=led.redis_ok if led else True,
            threads=self.supervisor.snapshot(),
            parse_errors_last_min=parse_last_min,
            parse_errors_per_min_max=self.settings.parse_errors_per_min,
            frames_last_min=frames_last_min,
            parse_error_share_max=self.settings.parse_error_share,
            unhealthy_after_s=self.settings.unhealthy_after_s,
            broker_error=None if pub is None or pub.broker_ok else pub.last_error,
            shard=self.settings.shard,
            shard_members=dict(led.shard_members) if led else {},
        )

    def status(self) -> dict[str, Any]:
        return self.snapshot().status()

    def healthy(self) -> tuple[bool, list[str]]:
        problems = self.snapshot().problems()
        return not problems, problems
