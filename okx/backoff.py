"""Retry policy: capped, jittered delays; OKX's connection and request budgets; close codes.
Pure: callers pass the time and the random source.

`backoff_delay` is the project's one backoff formula: the feeder's reconnects (`Backoff`), the
feeder's publisher, the REST client's retries and the ingest task's retry countdown all use it,
each with its own bounds.

OKX limits (okx-v5-protocol.md section 2): 3 new connections per second per IP; 480
subscribe/unsubscribe/login requests per hour per connection.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

# Close codes OKX documents, and what the feeder should do about each.
FATAL_CLOSE_CODES = {
    4001: "login failed: check OKX_API_KEY, OKX_API_SECRET, OKX_API_PASSPHRASE and OKX_DEMO",
    4007: "API key changed or deleted",
}
CLOSE_REASONS = {
    1009: "frame too large",
    4003: "more than 100 subscriptions per API key",
    4004: "no data received in 30 s (idle cut-off)",
    4005: "server buffer full (reading too slowly)",
    4008: "too many channels on this connection",
    4009: "too many channels on this connection",
}


def describe_close(code: int | None) -> str:
    if code is None:
        return "connection lost without a close frame"
    return FATAL_CLOSE_CODES.get(code) or CLOSE_REASONS.get(code) or f"closed with code {code}"


def is_fatal_close(code: int | None) -> bool:
    """A close that retrying cannot fix. The feeder keeps retrying slowly anyway (a key may be
    fixed without a restart) but reports it loudly."""
    return code in FATAL_CLOSE_CODES


def backoff_delay(
    attempt: int,
    *,
    base: float,
    cap: float,
    factor: float = 2.0,
    floor: float = 0.5,
    rng: Callable[[], float] = random.random,
) -> float:
    """Delay before retry number `attempt` (0-based): the ceiling base * factor**attempt, capped
    at `cap`, times a random share of it in [floor, 1]. The jitter spreads many clients hitting
    the same outage; the floor keeps every delay a real backoff (never near zero). The default
    floor 0.5 is "equal jitter" (half fixed, half random)."""
    try:
        ceiling = min(cap, base * factor**attempt)
    except OverflowError:  # a very long outage: factor**attempt is past any float
        ceiling = cap
    return ceiling * (floor + (1.0 - floor) * rng())


@dataclass
class Backoff:
    """`backoff_delay` with its attempt counted; reset after a connection proves healthy."""

    initial: float = 0.5
    factor: float = 2.0
    cap: float = 30.0
    attempt: int = 0
    # A fifth of the ceiling at least: a wide spread for a fleet of feeders reconnecting at
    # once, while still backing off.
    floor: float = 0.2

    def next_delay(self, rng: random.Random) -> float:
        delay = backoff_delay(
            self.attempt,
            base=self.initial,
            cap=self.cap,
            factor=self.factor,
            floor=self.floor,
            rng=rng.random,
        )
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0


class SlidingWindowLimit:
    """At most `limit` events in any `window` seconds. `wait(now)` says how long to wait before
    the next event is allowed; `record(now)` books one."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._times: deque[float] = deque()

    def _expire(self, now: float) -> None:
        while self._times and self._times[0] <= now - self.window:
            self._times.popleft()

    def wait(self, now: float) -> float:
        self._expire(now)
        if len(self._times) < self.limit:
            return 0.0
        return self._times[0] + self.window - now

    def record(self, now: float) -> None:
        self._expire(now)
        self._times.append(now)

    def used(self, now: float) -> int:
        self._expire(now)
        return len(self._times)


def new_connection_limit() -> SlidingWindowLimit:
    """OKX: 3 new connections per second per IP. Shared by all of a feeder's connections."""
    return SlidingWindowLimit(3, 1.0)


def request_limit() -> SlidingWindowLimit:
    """OKX: 480 subscribe/unsubscribe/login requests per hour, per connection. We keep a margin."""
    return SlidingWindowLimit(450, 3600.0)
