"""OKX REST rate limits, paced on the client so the exchange never has to say 50011.

OKX counts requests per endpoint in 2 s windows (per IP for public endpoints, per user for
private ones) and does not say whether a window is fixed or sliding. Pacing so that no *sliding*
window ever holds more than the limit also satisfies any fixed window, so that is what we do:
every endpoint keeps the times of its last `limit` requests, and a new request may start only
once the oldest of them is a full window old.

A request's time is taken when its reply has arrived (`slot()`), the latest moment the server can
have counted it, so network latency and its jitter can never squeeze two requests into one server
window. `acquire()` alone stamps the start time (for callers that do not track completion).

Implementations of one interface (`Limits`: `acquire`, `slot`, `pause`, `paused_for`, `rate`):

- `RateLimits`: the windows live in this process (threads share them);
- `core.rest_limits.RedisRateLimits`: the windows live in Redis, so every process using the same
  Redis shares one budget, as OKX does (okx/ imports no Redis: that limiter lives in core/, on
  the `Pacer` base below; `core.rest_limits.shared_limits()` picks the limiter of a process);
- `NoLimits`: pacing off.

`process_limits()` is the in-process limiter a `RestClient` uses when it is given none.

A 50011 or HTTP 429 means we are over anyway (a restart that forgot the last window, another
client on the same IP): `pause(path, seconds)` stops every caller of that endpoint - in this
process, or in every process sharing the Redis - until the server's window has rolled over.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

API_PREFIX = "/api/v5"

# endpoint path after /api/v5 -> (requests, window seconds); okx-v5-protocol.md section 6
LIMITS: dict[str, tuple[int, float]] = {
    "/market/books": (40, 2.0),
    "/market/books-full": (10, 2.0),
    "/market/trades": (100, 2.0),
    "/market/history-trades": (20, 2.0),
    "/market/candles": (40, 2.0),
    "/market/history-candles": (20, 2.0),
    "/market/ticker": (20, 2.0),
    "/market/tickers": (20, 2.0),
    "/trade/orders-history": (40, 2.0),
    "/trade/orders-history-archive": (20, 2.0),
    "/trade/fills": (60, 2.0),
    "/trade/fills-history": (10, 2.0),
    "/account/bills": (5, 1.0),
    "/account/bills-archive": (5, 2.0),
    "/account/balance": (10, 2.0),
    "/account/positions": (10, 2.0),
    "/public/instruments": (20, 2.0),
    "/public/time": (10, 2.0),
}
# an endpoint missing from the table gets the most common (and among the strictest) limit
DEFAULT_LIMIT = (10, 2.0)

# 0.95: each window is stretched by about 5 %, a margin for OKX counting at a front end whose
# clock we cannot see; with the completion-time stamps this still reaches ~94 % of the limit.
DEFAULT_RATE_FACTOR = 0.95
# A process that cannot see the others (the shared Redis is down) paces at this share of the
# deployment's limits (a Procfile worker with -c 2 plus the feeder is already three processes).
FALLBACK_SHARE = 0.25


def endpoint_of(path: str) -> str:
    """'/api/v5/market/history-trades?x=1' -> '/market/history-trades' (the key OKX limits by)."""
    path = path.split("?", 1)[0]
    return path[len(API_PREFIX) :] if path.startswith(API_PREFIX + "/") else path


def earliest_start(
    stamps: deque[float], in_flight: int, limit: int, window: float, now: float
) -> float:
    """When the next request may start, given the (sorted) times of recent requests and those
    still in flight (pure). In-flight requests count as if stamped in the future."""
    used = len(stamps) + in_flight
    if used < limit:
        return now
    if in_flight >= limit:
        return float("inf")  # wait for a reply first
    # the (used - limit + 1) oldest stamps must leave the window
    return stamps[used - limit] + window


class Limits(Protocol):
    """What a RestClient needs of a limiter."""

    def acquire(self, path: str) -> float: ...

    def slot(self, path: str) -> Any: ...

    def pause(self, path: str, seconds: float | None = None) -> None: ...

    def paused_for(self, path: str) -> float: ...


def share_of(limits: dict[str, tuple[int, float]], share: float) -> dict[str, tuple[int, float]]:
    """The same windows with `share` of their requests (at least one): a process that cannot see
    the others keeps a fraction of the budget, and its first burst shrinks with it (pure)."""
    return {ep: (max(1, int(n * share)), window) for ep, (n, window) in limits.items()}


class _Window:
    __slots__ = ("limit", "window", "stamps", "in_flight", "paused_until")

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self.stamps: deque[float] = deque()
        self.in_flight = 0
        self.paused_until = 0.0

    def forget_before(self, cut: float) -> None:
        while self.stamps and self.stamps[0] <= cut:
            self.stamps.popleft()

    def stamp(self, when: float) -> None:
        # replies can arrive out of order: keep the deque sorted (it is at most `limit` long)
        if not self.stamps or self.stamps[-1] <= when:
            self.stamps.append(when)
            return
        items = sorted([*self.stamps, when])
        self.stamps.clear()
        self.stamps.extend(items)


class Pacer:
    """`acquire` and `slot` for a limiter that implements `_reserve(endpoint) -> (token, waited)`
    (block until a request may start, and hold its place) and `_finish(token)` (count it as sent
    at this moment). Shared by the in-process and the Redis limiter."""

    def _reserve(self, endpoint: str) -> tuple[Any, float]:
        raise NotImplementedError

    def _finish(self, token: Any) -> None:
        raise NotImplementedError

    def acquire(self, path: str) -> float:
        """Block until a request to `path` may start and count it as sent now; return the
        seconds waited."""
        token, waited = self._reserve(endpoint_of(path))
        self._finish(token)
        return waited

    @contextmanager
    def slot(self, path: str) -> Iterator[float]:
        """`with limits.slot(path) as waited: send and read the reply` - the request is counted
        from the moment the block ends (reply received, or failed), the safest stamp; for the
        Redis limiter, in every process sharing the Redis."""
        token, waited = self._reserve(endpoint_of(path))
        try:
            yield waited
        finally:
            self._finish(token)


class RateLimits(Pacer):
    """Per-endpoint sliding-window pacing, safe to share between threads."""

    def __init__(
        self,
        factor: float = DEFAULT_RATE_FACTOR,
        limits: dict[str, tuple[int, float]] | None = None,
        clock: Callable[[], float] = time.monotonic,
        default: tuple[int, float] = DEFAULT_LIMIT,
    ) -> None:
        if not 0 < factor <= 1:
            raise ValueError("factor must be in (0, 1]")
        self.factor = factor
        self.limits = dict(LIMITS if limits is None else limits)
        self.default = default
        self._clock = clock
        self._cond = threading.Condition()
        self._windows: dict[str, _Window] = {}

    def _window(self, endpoint: str) -> _Window:
        w = self._windows.get(endpoint)
        if w is None:
            limit, seconds = self.limits.get(endpoint, self.default)
            w = self._windows[endpoint] = _Window(limit, seconds / self.factor)
        return w

    def rate(self, path: str) -> float:
        """The paced request rate (requests/s) for an endpoint."""
        w = self._window(endpoint_of(path))
        return w.limit / w.window

    def _reserve(self, endpoint: str) -> tuple[_Window, float]:
        """Block until a request may start; count it in flight; return (window, seconds waited)."""
        started = self._clock()
        with self._cond:
            w = self._window(endpoint)
            while True:
                now = self._clock()
                w.forget_before(now - w.window)
                at = max(
                    earliest_start(w.stamps, w.in_flight, w.limit, w.window, now), w.paused_until
                )
                if at <= now:
                    w.in_flight += 1
                    return w, now - started
                # woken early by a reply, a pause or a released slot; else sleep until `at`
                self._cond.wait(None if at == float("inf") else at - now)

    def _finish(self, w: _Window) -> None:
        with self._cond:
            w.in_flight -= 1
            w.stamp(self._clock())
            self._cond.notify_all()

    def pause(self, path: str, seconds: float | None = None) -> None:
        """The server said we are over (50011 / 429): hold every request to this endpoint for
        `seconds` (default: one full window, after which the server's count has rolled over)."""
        with self._cond:
            w = self._window(endpoint_of(path))
            until = self._clock() + (w.window if seconds is None else seconds)
            w.paused_until = max(w.paused_until, until)
            self._cond.notify_all()

    def paused_for(self, path: str) -> float:
        """Seconds left in a pause of this endpoint (0 when not paused)."""
        with self._cond:
            return max(0.0, self._window(endpoint_of(path)).paused_until - self._clock())


class NoLimits:
    """Pacing switched off (tests, a deliberately unpaced baseline)."""

    factor = 1.0

    def acquire(self, path: str) -> float:
        return 0.0

    @contextmanager
    def slot(self, path: str) -> Iterator[float]:
        yield 0.0

    def pause(self, path: str, seconds: float | None = None) -> None:
        pass

    def paused_for(self, path: str) -> float:
        return 0.0


_process_limits: RateLimits | None = None
_process_lock = threading.Lock()


def process_limits(factor: float = DEFAULT_RATE_FACTOR) -> RateLimits:
    """The in-process limiter shared by every RestClient of this process that is given none
    (created on first use, with the factor of that first call)."""
    global _process_limits
    with _process_lock:
        if _process_limits is None:
            _process_limits = RateLimits(factor)
        return _process_limits
