"""The per-connection socket thread: one OKX WebSocket connection and its reconnects.

A thin driver around the pure connection state machine (okx/ws/session.py: ConnState decides
when to ping, resubscribe, reconnect or replace) and the pure data path (pipeline.py). It reads
frames, feeds them to the pipeline under the feeder's one lock and carries out ConnState's
actions. Thread name: conn-<endpoint>[-n] (a 64008 replacement gets its own -n).

What it needs from the process around it is `DriverHost` (feeder.py's Feeder provides it), so
this module imports nothing of the feeder's wiring.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from typing import Any, Protocol

import websocket

from collector.outbox import Outbox
from collector.pipeline import Pipeline
from collector.recorder import Recorder
from collector.snapshot import ConnectionSnapshot, SubscriptionAge
from core.settings import FeederSettings as Settings
from okx.clock import now_ms
from okx.records import Data, Event, Pong
from okx.ws.actions import Alert, Close, Live, Lost, Replace, Send, Stale
from okx.ws.frames import OP_BINARY, OP_CLOSE, OP_PING, FrameReader
from okx.ws.session import ConnState
from okx.ws.subscriptions import arg_key

log = logging.getLogger("collector.driver")

RECV_TIMEOUT_S = 0.2
TICK_EVERY_S = 0.1
_LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


class DriverHost(Protocol):
    """The process a Driver runs in: shared settings, lock, data path and connection budget."""

    settings: Settings
    rng: random.Random
    lock: threading.Lock
    stopping: threading.Event
    pipeline: Pipeline
    outbox: Outbox
    recorder: Recorder | None
    reconnects: int

    def next_id(self) -> int: ...

    def connection_wait(self, now: float) -> float: ...

    def bad_frame(self, res: Any, now: float) -> None: ...

    def replace(self, old: Driver) -> None: ...


class Driver(threading.Thread):
    """One OKX WebSocket connection and its reconnects. Moves bytes; ConnState decides."""

    def __init__(
        self,
        feeder: DriverHost,
        endpoint: str,
        args: list[dict],
        login: bool,
        name: str,
        predecessor: Driver | None = None,
    ) -> None:
        super().__init__(name=name, daemon=True)
        s = feeder.settings
        self.feeder = feeder
        self.endpoint = endpoint
        self.url = f"{s.ws_url}/ws/v5/{endpoint}"
        self.state = ConnState(
            endpoint,
            args,
            login=login,
            credentials=s.credentials,
            ping_after=s.ping_after_s,
            pong_timeout=s.pong_timeout_s,
            stale_after=s.stale_after_s,
            healthy_after=s.healthy_after_s,
            rng=feeder.rng,
            id_prefix=endpoint[:2] + str(feeder.next_id()),
        )
        self.ws: websocket.WebSocket | None = None
        self.token: int | None = None  # identity of the current socket for the pipeline
        self.inbox: deque[tuple] = deque()  # ("retire",) | ("resub", key), from other threads
        self.predecessor = predecessor
        self.successor: Driver | None = None
        self.retired = False
        self.frames = 0

    def snapshot(self, now: float) -> ConnectionSnapshot:
        """This connection's state for health and the heartbeat (read without the lock: each
        value is a single attribute read, and a scrape may be a moment behind)."""
        state = self.state
        ages = tuple(
            SubscriptionAge(key[0] or "", key[1] or key[2] or "", now - t)
            for key, t in list(state.last_msg.items())
        )
        return ConnectionSnapshot(
            name=self.name,
            endpoint=self.endpoint,
            phase=state.phase,
            retired=self.retired,
            frames=self.frames,
            ages=ages,
            state=state.snapshot(now),
        )

    def resubscribe(self, key: tuple) -> None:
        """Ask this thread to resubscribe (channel, instId): the book resync's last resort."""
        self.inbox.append(("resub", key))

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
            ws = websocket.create_connection(
                self.url, timeout=5, skip_utf8_validation=True, enable_multithread=False
            )
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
        assert ws is not None, "_read runs only after _connect"
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
        last_msg = state.last_msg  # the staleness watchdog's per-subscription times
        # ws.sock is None only if the socket was closed meanwhile: the first read() then fails
        # and the loop below closes the connection like any read error.
        reader = FrameReader(ws.sock)  # type: ignore[arg-type]
        next_tick = mono() + TICK_EVERY_S
        while self.ws is ws and not feeder.stopping.is_set():
            try:
                frames = reader.read()  # every complete frame one recv() delivered
            except TimeoutError:
                frames = []
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
                outbox.hold(self)  # one publisher wake-up for the whole burst
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
                            # Any: dispatched on type(res) below, which mypy cannot narrow
                            res: Any = feed(token, data, now_ms, now)
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
                    self.feeder.pipeline.subscribed(a.keys, now_ms())
                if self.state.phase == "live" and self.predecessor is not None:
                    pred, self.predecessor = self.predecessor, None
                    pred.inbox.append(("retire",))
            elif t is Stale:
                key = (a.key[0], a.key[1] or a.key[2] or "")
                with self.feeder.lock:
                    self.feeder.pipeline.mark_lost(key, "stale", now_ms())
            elif t is Lost:
                succ = self.successor
                replaced_by = (
                    succ.token if succ is not None and succ.state.phase == "live" else None
                )
                with self.feeder.lock:
                    self.feeder.pipeline.conn_closed(self.token, now_ms(), replaced_by, a.keys)
                if succ is not None:
                    self.retired = True  # the replacement carries on; no reconnect

    def _closed(self, code: int | None, reason: str, initiated: bool = False) -> None:
        """The socket is gone (or we dropped it): tell the state machine, then reconnect later."""
        if self.ws is None:
            return
        self._shutdown_socket()
        if not initiated:
            log.warning(
                "%s: connection closed (%s) %s",
                self.endpoint,
                code if code is not None else "no close frame",
                reason,
            )
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
            self.feeder.pipeline.conn_closed(
                self.token, now_ms(), succ.token if succ is not None else None
            )
        self.retired = True

    def _shutdown_socket(self) -> None:
        ws, self.ws = self.ws, None
        if ws is not None:
            try:
                ws.close(timeout=0.5)
            except Exception:  # noqa: BLE001
                pass
