"""The per-connection state machine: login, subscribe with ack tracking, keepalive, staleness
watchdog, reconnect policy. Pure: no sockets, no clock, no logging. The socket driver
(feeder.py) feeds it events and carries out the actions it returns.

Events in:  on_open(now, wall) · on_event(Event, now) · on_pong(now) · seen(key, now) (data) ·
            tick(now) · on_closed(code, now)
Actions out (lists of small records):
    Send(text, what)     write a text frame ("ping", "login", "subscribe", "unsubscribe")
    Close(reason)        close the socket; then call on_closed
    Replace(reason)      open a replacement connection first (64008), close this one once it is live
    Alert(level, msg)    one log line ("warning" / "error")
    Live(keys)           these subscriptions are acked and streaming (gap bookkeeping)
    Stale(key, since)    this subscription went silent and is being resubscribed

Timers (okx-v5-protocol.md section 2): send the text `ping` after `ping_after` s of silence
(< 30 s, or OKX closes with 4004), reconnect when no `pong` comes within `pong_timeout` s.
"""

from __future__ import annotations

import random
from typing import Any

from okx.backoff import Backoff, SlidingWindowLimit, describe_close, is_fatal_close, request_limit
from okx.channels import BOOK_CHANNELS, INCREMENTAL_BOOK_CHANNELS, PRIVATE_CHANNELS
from okx.records import Event
from okx.signing import Credentials, ws_login_message
from okx.ws.actions import Action, Alert, Close, Live, Lost, Replace, Send, Stale, Sub  # noqa: F401
from okx.ws.subscriptions import RequestIds, SubscriptionArg, SubscriptionKey, arg_key, requests

# Subscription errors retrying cannot fix: report once, loudly, and leave that arg alone.
HARD_CODES = frozenset({"60011", "60012", "60018", "64001", "64002", "64003", "64004"})
LOGIN_TIMEOUT_S = 10.0
SUB_RETRY_S = 5.0  # a soft subscribe error (60014, 64007, ...) is retried after this
SUB_RETRIES = 5
FATAL_MIN_DELAY_S = 60.0  # login failed / key deleted: keep retrying, slowly
# Timer defaults (core/settings.py takes its defaults from these; okx/ imports nothing of core/).
OKX_IDLE_CUTOFF_S = 30.0  # OKX: a connection that received nothing this long is closed (4004)
PING_AFTER_S = 20.0  # send `ping` after this much silence (< OKX_IDLE_CUTOFF_S)
PONG_TIMEOUT_S = 10.0  # no `pong` this long after a ping: reconnect
STALE_AFTER_S = 60.0  # a subscription silent this long is resubscribed
HEALTHY_AFTER_S = 5.0  # a connection live this long resets the reconnect backoff
BOOK_HEARTBEAT_S = 60.0  # OKX: a quiet incremental book sends a heartbeat every ~60 s
# Event-driven channels: silence is normal. The connection ping keeps these sockets alive.
QUIET_CHANNELS = PRIVATE_CHANNELS | {"trades", "trades-all"}
BUDGET_RESERVE = 30  # requests kept back for reconnect-time resubscribes


DOWN, LOGIN, SUBSCRIBING, LIVE, CLOSING = "down", "login", "subscribing", "live", "closing"


class ConnState:
    """Everything one OKX WebSocket connection decides. One instance lives across reconnects."""

    def __init__(
        self,
        endpoint: str,
        args: list[SubscriptionArg],
        *,
        login: bool = False,
        credentials: Credentials | None = None,
        ping_after: float = PING_AFTER_S,
        pong_timeout: float = PONG_TIMEOUT_S,
        stale_after: float = STALE_AFTER_S,
        healthy_after: float = HEALTHY_AFTER_S,
        rng: random.Random | None = None,
        id_prefix: str = "r",
        backoff: Backoff | None = None,
        budget: SlidingWindowLimit | None = None,
    ) -> None:
        if login and credentials is None:
            raise ValueError(f"{endpoint}: login needs credentials")
        self.endpoint = endpoint
        self.login = login
        self._creds = credentials
        self.ping_after = ping_after
        self.pong_timeout = pong_timeout
        self.stale_after = stale_after
        self.healthy_after = healthy_after
        self._rng = rng or random.Random()
        self._ids = RequestIds(id_prefix)
        self.backoff = backoff or Backoff()
        self.budget = budget or request_limit()
        self.subs: dict[SubscriptionKey, Sub] = {arg_key(a): Sub(dict(a)) for a in args}
        self.last_msg: dict[SubscriptionKey, float] = {}  # key -> time of the last data frame
        self.phase = DOWN
        self.conn_id: str | None = None
        self.opened_at = 0.0
        self.live_at = 0.0
        self.last_rx = 0.0
        self.ping_sent_at: float | None = None
        self.login_sent_at = 0.0
        self.replacing = False  # a 64008 notice asked for a replacement
        self.reconnects = 0
        self.last_close: str | None = None
        self.next_connect_at = 0.0
        self._requests: dict[str, list[SubscriptionKey]] = {}
        self._next_stale_check = 0.0

    # ----- helpers -------------------------------------------------------------------------------

    def _subscribe(
        self, keys: list[SubscriptionKey], now: float, op: str = "subscribe"
    ) -> list[Action]:
        out: list[Action] = []
        args = [self.subs[k].arg for k in keys]
        for rid, batch, text in requests(op, args, self._ids):
            self.budget.record(now)
            if op == "subscribe":
                bkeys = [arg_key(a) for a in batch]
                self._requests[rid] = bkeys
                for k in bkeys:
                    sub = self.subs[k]
                    sub.status, sub.request = "sent", rid
            out.append(Send(text, op))
        return out

    def _live_check(self, now: float) -> list[Action]:
        if self.phase == SUBSCRIBING and all(
            s.status in ("acked", "failed") for s in self.subs.values()
        ):
            self.phase = LIVE
            self.live_at = now
            return [
                Alert(
                    "info",
                    f"{self.endpoint}: live with "
                    f"{sum(s.status == 'acked' for s in self.subs.values())} "
                    f"subscriptions",
                )
            ]
        return []

    def stale_limit(self, channel: str | None) -> float | None:
        """Seconds of silence after which a subscription is resubscribed (None: never)."""
        if channel in QUIET_CHANNELS or channel is None:
            return None
        if channel in INCREMENTAL_BOOK_CHANNELS or channel in BOOK_CHANNELS:
            return max(self.stale_after, BOOK_HEARTBEAT_S + 15.0)
        return self.stale_after

    # ----- events --------------------------------------------------------------------------------

    def on_open(self, now: float, wall: float, conn_seq: int = 0) -> list[Action]:
        """The socket is connected. `wall` is Unix time for the login timestamp."""
        self.phase = LOGIN if self.login else SUBSCRIBING
        self.opened_at = self.last_rx = now
        self.ping_sent_at = None
        self._requests.clear()
        for sub in self.subs.values():
            if sub.status != "failed":
                sub.status, sub.request, sub.retries = "pending", None, 0
        if self.login:
            creds = self._creds
            assert creds is not None, "login without credentials"  # __init__ refuses that
            self.login_sent_at = now
            self.budget.record(now)
            return [Send(ws_login_message(creds, wall), "login")]
        return self._subscribe_pending(now)

    def _subscribe_pending(self, now: float) -> list[Action]:
        keys = [k for k, s in self.subs.items() if s.status == "pending"]
        out = self._subscribe(keys, now) if keys else []
        return out + self._live_check(now)

    def on_pong(self, now: float) -> None:
        self.last_rx = now
        self.ping_sent_at = None

    def seen(self, key: SubscriptionKey, now: float) -> None:
        """A data frame for `key` arrived (hot path)."""
        self.last_rx = now
        self.last_msg[key] = now
        self.ping_sent_at = None

    def on_event(self, ev: Event, now: float) -> list[Action]:
        self.last_rx = now
        self.ping_sent_at = None
        kind = ev.event
        if kind == "login":
            if ev.code in (None, "0"):
                self.conn_id = ev.conn_id
                self.phase = SUBSCRIBING
                return [Alert("info", f"{self.endpoint}: logged in")] + self._subscribe_pending(now)
            return self._login_failed(ev.code, ev.msg)
        if kind == "subscribe" and ev.arg is not None:
            sub = self.subs.get(arg_key(ev.arg))
            if sub is None:
                return []
            first = sub.status != "acked"
            sub.status, sub.error, sub.acked_at = "acked", None, now
            self.conn_id = ev.conn_id or self.conn_id
            out = [Live((arg_key(ev.arg),))] if first else []
            return out + self._live_check(now)
        if kind == "unsubscribe":
            return []
        if kind == "error":
            return self._error(ev, now)
        if kind == "notice":
            if ev.code == "64008" and not self.replacing and self.phase != DOWN:
                self.replacing = True
                return [Replace(f"{self.endpoint}: service upgrade notice 64008: {ev.msg}")]
            return [Alert("warning", f"{self.endpoint}: notice {ev.code}: {ev.msg}")]
        if kind == "channel-conn-count-error":
            if ev.arg is not None and arg_key(ev.arg) in self.subs:
                sub = self.subs[arg_key(ev.arg)]
                sub.status, sub.error = "failed", f"channel-conn-count-error {ev.conn_count}"
            return [
                Alert(
                    "error",
                    f"{self.endpoint}: too many connections for "
                    f"{ev.arg}: subscription dropped by OKX",
                )
            ]
        return []

    def _login_failed(self, code: str | None, msg: str | None) -> list[Action]:
        self.phase = CLOSING
        self.backoff.attempt = max(self.backoff.attempt, 8)
        return [
            Alert(
                "error",
                f"{self.endpoint}: login failed ({code}: {msg}); check "
                "OKX_API_KEY/SECRET/PASSPHRASE and OKX_DEMO; retrying slowly",
            ),
            Close(f"login failed ({code})"),
        ]

    def _error(self, ev: Event, now: float) -> list[Action]:
        if self.phase == LOGIN:
            return self._login_failed(ev.code, ev.msg)
        keys = self._requests.pop(ev.id, None) if ev.id else None
        if not keys:
            return [Alert("warning", f"{self.endpoint}: error {ev.code}: {ev.msg}")]
        pending = [k for k in keys if self.subs[k].status == "sent"]
        out: list[Action] = []
        if len(pending) > 1:
            # One bad arg fails the whole request: retry each arg alone to find the culprit.
            for k in pending:
                self.subs[k].status = "pending"
            out.append(
                Alert(
                    "warning",
                    f"{self.endpoint}: request {ev.id} failed ({ev.code}: "
                    f"{ev.msg}); retrying its {len(pending)} args one by one",
                )
            )
            for k in pending:
                out += self._subscribe([k], now)
            return out
        for k in pending:
            sub = self.subs[k]
            sub.error = f"{ev.code}: {ev.msg}"
            if ev.code in HARD_CODES or sub.retries >= SUB_RETRIES:
                sub.status = "failed"
                out.append(
                    Alert(
                        "error",
                        f"{self.endpoint}: subscription {sub.arg} refused "
                        f"({ev.code}: {ev.msg}); not retried",
                    )
                )
            else:
                sub.status, sub.retries = "retry", sub.retries + 1
                sub.retry_at = now + SUB_RETRY_S * sub.retries
                out.append(
                    Alert(
                        "warning",
                        f"{self.endpoint}: subscription {sub.arg} failed "
                        f"({ev.code}: {ev.msg}); retry {sub.retries}",
                    )
                )
        return out + self._live_check(now)

    def resubscribe(self, key: SubscriptionKey, now: float, why: str) -> list[Action]:
        """Unsubscribe and subscribe one arg (book fallback, staleness). Rate-limited per arg and
        by the request budget; returns [] when not allowed now."""
        sub = self.subs.get(key)
        if sub is None or self.phase not in (SUBSCRIBING, LIVE) or sub.status == "failed":
            return []
        if now - sub.last_resub < min(self.stale_after, 10.0):
            return []
        if self.budget.limit - self.budget.used(now) < BUDGET_RESERVE:
            return [
                Alert(
                    "warning",
                    f"{self.endpoint}: not resubscribing {sub.arg} ({why}): "
                    "request budget nearly used up",
                )
            ]
        sub.last_resub = now
        return (
            [Alert("warning", f"{self.endpoint}: resubscribing {sub.arg}: {why}")]
            + self._subscribe([key], now, "unsubscribe")
            + self._subscribe([key], now)
        )

    def tick(self, now: float) -> list[Action]:
        out: list[Action] = []
        phase = self.phase
        if phase == DOWN or phase == CLOSING:
            return out
        if phase == LOGIN and now - self.login_sent_at > LOGIN_TIMEOUT_S:
            self.phase = CLOSING
            return [
                Alert("error", f"{self.endpoint}: no login ack within {LOGIN_TIMEOUT_S:.0f} s"),
                Close("login timeout"),
            ]
        if self.ping_sent_at is not None:
            if now - self.ping_sent_at >= self.pong_timeout:
                self.phase = CLOSING
                return [
                    Alert(
                        "warning",
                        f"{self.endpoint}: no pong within {self.pong_timeout:g} s; reconnecting",
                    ),
                    Close("pong timeout"),
                ]
        elif now - self.last_rx >= self.ping_after:
            self.ping_sent_at = now
            out.append(Send("ping", "ping"))
        if now >= self._next_stale_check and phase in (SUBSCRIBING, LIVE):
            self._next_stale_check = now + 1.0
            retry = [k for k, s in self.subs.items() if s.status == "retry" and now >= s.retry_at]
            if retry:
                for k in retry:
                    self.subs[k].status = "pending"
                out += self._subscribe(retry, now)
            out += self._stale(now)
        return out

    def _stale(self, now: float) -> list[Action]:
        out: list[Action] = []
        for key, sub in self.subs.items():
            if sub.status != "acked":
                continue
            limit = self.stale_limit(key[0])
            if limit is None:
                continue
            last = max(self.last_msg.get(key, 0.0), sub.acked_at)
            if now - last >= limit and now - sub.last_resub >= limit:
                actions = self.resubscribe(key, now, f"no data for {now - last:.0f} s")
                if any(isinstance(a, Send) for a in actions):
                    out.append(Stale(key, last))
                out += actions
        return out

    def on_closed(self, code: int | None, now: float) -> list[Action]:
        """The socket closed (or could not be opened: opened_at stays behind)."""
        was = self.phase
        lost = tuple(k for k, s in self.subs.items() if s.status == "acked")
        self.phase = DOWN
        self.ping_sent_at = None
        self.replacing = False
        self.reconnects += 1
        self.last_close = describe_close(code)
        for sub in self.subs.values():
            if sub.status != "failed":
                sub.status = "pending"
        if was == LIVE and now - self.live_at >= self.healthy_after:
            self.backoff.reset()
        delay = self.backoff.next_delay(self._rng)
        level = "warning"
        if is_fatal_close(code):
            delay = max(delay, FATAL_MIN_DELAY_S)
            level = "error"
        self.next_connect_at = now + delay
        return [
            Alert(level, f"{self.endpoint}: {self.last_close}; reconnecting in {delay:.1f} s"),
            Lost(lost),
        ]

    def snapshot(self, now: float) -> dict[str, Any]:
        """State for /healthz and the heartbeat."""
        return {
            "endpoint": self.endpoint,
            "state": self.phase,
            "conn_id": self.conn_id,
            "reconnects": self.reconnects,
            "last_close": self.last_close,
            "subscriptions": {
                ":".join(str(p) for p in k if p): {
                    "status": s.status,
                    "error": s.error,
                    "age_s": round(now - self.last_msg[k], 3) if k in self.last_msg else None,
                }
                for k, s in self.subs.items()
            },
        }
