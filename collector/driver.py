"""The feeder process: thin socket drivers around the pure state machine (connection.py) and data
path (pipeline.py), plus the wiring of the publisher, ledger, REST resync, health and recorder.

Threads:
    conn-<endpoint>[-n]  one per WebSocket connection (a 64008 replacement gets its own): reads
                         frames, feeds the pipeline (under one lock), carries out ConnState actions
    publisher            outbox -> Celery tasks (publisher.py)
    ledger               gaps, watermarks, heartbeat -> Redis (ledger.py)
    rest                 REST book snapshots for resyncs (off the reader threads)
    health               HTTP /healthz and /metrics (health.py)
The main thread waits for SIGTERM/SIGINT and then shuts everything down in order.
"""
from __future__ import annotations

import itertools
import logging
import random
import sys
import threading
import time
from collections import deque
from typing import Any

import websocket

from okx.backoff import new_connection_limit
from okx.channels import endpoint_for
from okx.ws.session import Alert, Close, ConnState, Live, Lost, Replace, Send, Stale
from collector.ledger import Ledger
from collector.outbox import Outbox
from collector.pipeline import LogLimiter, Pipeline
from collector.publisher import Publisher
from okx.records import Data, Event, ParseError, Pong
from collector.recorder import Recorder
from core.rest_limits import shared_limits
from okx.rest.client import RestClient, RestError
from okx.rest.endpoints import book as rest_book
from core.settings import FeederSettings as Settings
from okx.ws.subscriptions import arg_key, plan
from okx.ws.frames import OP_BINARY, OP_CLOSE, OP_PING, FrameReader

log = logging.getLogger("collector.driver")

RECV_TIMEOUT_S = 0.2
TICK_EVERY_S = 0.1
SWITCH_INTERVAL_S = 0.0005
_LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


class Driver(threading.Thread):
    """One OKX WebSocket connection and its reconnects. Moves bytes; ConnState decides."""

    def __init__(self, feeder: "Feeder", endpoint: str, args: list[dict], login: bool,
                 name: str, predecessor: "Driver | None" = None) -> None:
        super().__init__(name=name, daemon=True)
        s = feeder.settings
        self.feeder = feeder
        self.endpoint = endpoint
        self.url = f"{s.ws_url}/ws/v5/{endpoint}"
        self.state = ConnState(endpoint, args, login=login, credentials=s.credentials,
                               ping_after=s.ping_after_s, pong_timeout=s.pong_timeout_s,
                               stale_after=s.stale_after_s, healthy_after=s.healthy_after_s,
                               rng=feeder.rng,
                               id_prefix=endpoint[:2] + str(feeder.next_id()))
        self.ws: websocket.WebSocket | None = None
        self.token: int | None = None          # identity of the current socket for the pipeline
        self.inbox: deque = deque()
        self.predecessor = predecessor
        self.successor: Driver | None = None
        self.retired = False
        self.frames = 0

    # ----- thread --------------------------------------------------------------------------------

    def run(self) -> None:
        stop = self.feeder.stopping
        try:
            while not stop.is_set() and not self.retired:
                if self.ws is None:
                    self._connect()
                else:
                    self._read()
        finally:
            self._shutdown_socket()

    def _connect(self) -> None:
        feeder = self.feeder
        now = time.monotonic()
        wait = max(self.state.next_connect_at - now, feeder.connection_wait(now))
        if wait > 0:
            feeder.stopping.wait(min(wait, 0.5))
            return
        try:
            ws = websocket.create_connection(self.url, timeout=5, skip_utf8_validation=True,
                                             enable_multithread=False)
        except Exception as exc:  # noqa: BLE001 - refused, DNS, TLS, handshake...
            log.warning("%s: cannot connect to %s: %s", self.endpoint, self.url, exc)
            self._do(self.state.on_closed(None, time.monotonic()))
            return
        ws.settimeout(RECV_TIMEOUT_S)
        self.ws = ws
        self.token = feeder.next_id()
        log.info("%s: connected to %s", self.endpoint, self.url)
        pred = self.predecessor
        if pred is not None and pred.is_alive() and pred.token is not None:
            with feeder.lock:
                feeder.pipeline.replacing(pred.token, self.token)
        self._do(self.state.on_open(time.monotonic(), time.time()))

    def _read(self) -> None:
        feeder = self.feeder
        ws = self.ws
        state = self.state
        pipeline = feeder.pipeline
        feed = pipeline.feed
        lock = feeder.lock
        recorder = feeder.recorder
        outbox = feeder.outbox
        endpoint = self.endpoint
        token = self.token
        mono = time.monotonic
        wall = time.time
        last_msg = state.last_msg   # the staleness watchdog's per-subscription times
        reader = FrameReader(ws.sock)
        next_tick = mono() + TICK_EVERY_S
        while self.ws is ws and not feeder.stopping.is_set():
            try:
                frames = reader.read()         # every complete frame one recv() delivered
            except TimeoutError:
                frames = ()
            except Exception as exc:  # noqa: BLE001 - reset, closed, protocol error
                self._closed(None, f"{type(exc).__name__}: {exc}")
                return
            now = mono()
            if frames:
                # One clock reading per recv: these frames arrived together, and their records
                # reach the publisher together (outbox.hold/release).
                t_wall = wall()
                now_ms = int(t_wall * 1000)
                got_data = False
                outbox.hold(self)       # one publisher wake-up for the whole burst
                try:
                    for opcode, data in frames:
                        if opcode > OP_BINARY:
                            if opcode == OP_CLOSE:
                                code = int.from_bytes(data[:2], "big") if len(data) >= 2 else None
                                self._closed(code, data[2:].decode("utf-8", "replace"))
                                return
                            if opcode == OP_PING:
                                try:
                                    ws.pong(data)
                                except Exception as exc:  # noqa: BLE001
                                    self._closed(None, f"pong failed: {exc}")
                                    return
                            continue
                        self.frames += 1
                        if recorder is not None:
                            recorder.add(t_wall, endpoint, data)
                        with lock:
                            res = feed(token, data, now_ms, now)
                        t = type(res)
                        if t is Data:
                            # state.seen() inlined: the connection-wide part once per recv below.
                            last_msg[arg_key(res.arg)] = now
                            got_data = True
                        elif t is Event:
                            self._do(state.on_event(res, now))
                            if self.ws is not ws:
                                return
                        elif t is Pong:
                            state.on_pong(now)
                        else:
                            state.last_rx = now
                            feeder.bad_frame(res, now)
                finally:
                    outbox.release(self)
                if got_data:
                    state.last_rx = now
                    state.ping_sent_at = None
            if now >= next_tick or self.inbox:
                next_tick = now + TICK_EVERY_S
                while self.inbox:
                    self._inbox(self.inbox.popleft(), now)
                if self.ws is not ws:
                    return
                self._do(state.tick(now))

    def _inbox(self, item: tuple, now: float) -> None:
        what = item[0]
        if what == "retire":
            self._retire()
        elif what == "resub":
            channel, inst = item[1]
            for key in self.state.subs:
                if key[0] == channel and key[1] == inst:
                    self._do(self.state.resubscribe(key, now, "book resync fallback"))

    # ----- actions -------------------------------------------------------------------------------

    def _do(self, actions: list) -> None:
        for a in actions:
            t = type(a)
            if t is Send:
                if self.ws is None:
                    continue
                try:
                    self.ws.send(a.text)
                except Exception as exc:  # noqa: BLE001
                    self._closed(None, f"send failed: {exc}")
                    return
                if a.what == "ping":
                    log.debug("%s: ping", self.endpoint)
            elif t is Alert:
                log.log(_LEVELS.get(a.level, logging.INFO), "%s", a.message)
            elif t is Close:
                log.warning("%s: closing: %s", self.endpoint, a.reason)
                self._closed(None, a.reason, initiated=True)
                return
            elif t is Replace:
                log.warning("%s", a.reason)
                self.feeder.replace(self)
            elif t is Live:
                with self.feeder.lock:
                    self.feeder.pipeline.subscribed(a.keys, int(time.time() * 1000))
                if self.state.phase == "live" and self.predecessor is not None:
                    pred, self.predecessor = self.predecessor, None
                    pred.inbox.append(("retire",))
            elif t is Stale:
                key = (a.key[0], a.key[1] or a.key[2] or "")
                with self.feeder.lock:
                    self.feeder.pipeline.mark_lost(key, "stale", int(time.time() * 1000))
            elif t is Lost:
                succ = self.successor
                replaced_by = succ.token if succ is not None and succ.state.phase == "live" else None
                with self.feeder.lock:
                    self.feeder.pipeline.conn_closed(self.token, int(time.time() * 1000),
                                                     replaced_by, a.keys)
                if succ is not None:
                    self.retired = True   # the replacement carries on; no reconnect

    def _closed(self, code: int | None, reason: str, initiated: bool = False) -> None:
        """The socket is gone (or we dropped it): tell the state machine, then reconnect later."""
        if self.ws is None:
            return
        self._shutdown_socket()
        if not initiated:
            log.warning("%s: connection closed (%s) %s", self.endpoint,
                        code if code is not None else "no close frame", reason)
        if self.feeder.stopping.is_set():
            return
        self._do(self.state.on_closed(code, time.monotonic()))
        self.feeder.reconnects += 1

    def _retire(self) -> None:
        """The replacement is live: close this one without a gap."""
        log.info("%s: replacement is live; closing the old connection", self.endpoint)
        succ = self.successor
        self._shutdown_socket()
        with self.feeder.lock:
            self.feeder.pipeline.conn_closed(self.token, int(time.time() * 1000),
                                             succ.token if succ is not None else None)
        self.retired = True

    def _shutdown_socket(self) -> None:
        ws, self.ws = self.ws, None
        if ws is not None:
            try:
                ws.close(timeout=0.5)
            except Exception:  # noqa: BLE001
                pass


class Feeder:
    """Builds and runs everything. `start()` does the I/O; the constructor only stores."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.rng = random.Random()
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self._ids = itertools.count(1)
        self._conn_limit = new_connection_limit()
        self._conn_lock = threading.Lock()
        self.outbox = Outbox(settings.batch_max, settings.buffer_max)
        self.pipeline = Pipeline(self.outbox.put, depth_stored=settings.book_depth_stored,
                                 full_every_ms=int(settings.full_book_every_s * 1000))
        self.recorder: Recorder | None = None
        self.drivers: list[Driver] = []
        self.publisher: Publisher | None = None
        self.ledger: Ledger | None = None
        self.health = None
        # Book bootstraps are paced with every other process on this Redis (OKX counts per IP),
        # and retried once only: the pipeline has its own retry and resubscribe fallback.
        self.rest = RestClient(settings.rest_url, credentials=settings.credentials,
                               demo=settings.demo, limits=shared_limits(
                                   settings.redis_url, factor=settings.rest_rate_factor,
                                   fallback_share=settings.rest_fallback_share),
                               max_retries=1)
        self.reconnects = 0
        self.started = time.monotonic()
        self._bad_log = LogLimiter(10.0)
        self._rest_thread: threading.Thread | None = None
        self.metrics = None

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

    # ----- lifecycle -----------------------------------------------------------------------------

    def start(self) -> "Feeder":
        s = self.settings
        from collector.health import HealthServer, Metrics

        # The readers rarely block while frames are queued in the socket; a shorter GIL switch
        # interval (default 5 ms) lets the publisher thread in sooner: lower socket->publish latency.
        sys.setswitchinterval(SWITCH_INTERVAL_S)

        self.metrics = Metrics(self)
        if s.record_path:
            self.recorder = Recorder(s.record_path)
        self.publisher = Publisher(self.outbox, s.redis_url, s.feeder_id,
                                   on_gaps=self._overflow_gaps, latency=self.metrics.latency,
                                   linger_max_s=s.linger_max_ms / 1000)
        the_plan = plan(s.channels, s.instruments)
        keys = []
        for endpoint in the_plan.endpoints():
            for a in the_plan.args[endpoint]:
                keys.append((a["channel"], a.get("instId") or a.get("instType") or ""))
        self.ledger = Ledger(s.redis_url, s.feeder_id, keys, pull=self._pull,
                             on_gap_id=self.publisher.request_repair, status=self.status)
        self.publisher.start()
        self.ledger.start()
        self._rest_thread = threading.Thread(target=self._rest_loop, name="rest", daemon=True)
        self._rest_thread.start()
        for endpoint in the_plan.endpoints():
            d = Driver(self, endpoint, the_plan.args[endpoint], the_plan.login[endpoint],
                       f"conn-{endpoint}")
            self.drivers.append(d)
            d.start()
        if s.health_port:
            self.health = HealthServer(s.health_host, s.health_port, self)
            self.health.start()
        log.info("feeder %s started: %d connections, %d subscriptions", s.feeder_id,
                 len(self.drivers), len(keys))
        return self

    def replace(self, old: Driver) -> None:
        """64008: open a replacement for `old`; it retires `old` once it is live."""
        if old.successor is not None and old.successor.is_alive():
            return
        args = [sub.arg for sub in old.state.subs.values()]
        new = Driver(self, old.endpoint, args, old.state.login,
                     f"conn-{old.endpoint}-{self.next_id()}", predecessor=old)
        old.successor = new
        self.drivers.append(new)
        new.start()

    def _overflow_gaps(self, gaps: list) -> None:
        with self.lock:
            self.pipeline.gaps.extend(gaps)

    def _pull(self, ledger: Ledger) -> None:
        with self.lock:
            p = self.pipeline
            gaps = list(p.gaps)
            p.gaps.clear()
            marks = dict(p.marks)
            first = dict(p.first)
        if gaps:
            ledger.add_gaps(gaps)
        ledger.marks = marks
        ledger.first = first

    def _rest_loop(self) -> None:
        p = self.pipeline
        while not self.stopping.wait(0.05):
            with self.lock:
                jobs = p.due_resyncs(int(time.time() * 1000))
                fallback = list(p.resubscribe)
                p.resubscribe.clear()
            for key, epoch, sz in jobs:
                try:
                    snap = rest_book(self.rest, key[1], sz)
                except RestError as exc:
                    log.warning("resync %s %s: REST books failed: %s", key[0], key[1], exc)
                    snap = None
                with self.lock:
                    outcome = p.offer_snapshot(key, snap, epoch, int(time.time() * 1000),
                                               time.monotonic())
                log.log(logging.INFO if outcome == "done" else logging.WARNING,
                        "resync %s %s from REST: %s", key[0], key[1], outcome)
            for key in fallback:
                endpoint = endpoint_for(key[0])
                for d in self.drivers:
                    if d.endpoint == endpoint and d.is_alive() and not d.retired:
                        d.inbox.append(("resub", key))

    def status(self) -> dict:
        now = time.monotonic()
        conns = [d.state.snapshot(now) | {"name": d.name, "frames": d.frames}
                 for d in self.drivers if d.is_alive()]
        return {"connections": conns}

    def healthy(self) -> tuple[bool, list[str]]:
        problems = []
        for d in self.drivers:
            if d.is_alive() and not d.retired and d.state.phase != "live":
                problems.append(f"{d.name} is {d.state.phase}")
        if self.publisher is not None and not self.publisher.broker_ok:
            problems.append("broker unavailable")
        if self.ledger is not None and not self.ledger.redis_ok:
            problems.append("redis unavailable for the ledger")
        return not problems, problems

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
        log.info("feeder stopped: %d records published", self.publisher.published
                 if self.publisher else 0)
