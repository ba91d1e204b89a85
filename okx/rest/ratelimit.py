"""OKX REST rate limits, paced on the client so the exchange never has to say 50011.

OKX counts requests per endpoint in 2 s windows (per IP for public endpoints, per user for
private ones) and does not say whether a window is fixed or sliding. Pacing so that no *sliding*
window ever holds more than the limit also satisfies any fixed window, so that is what we do:
every endpoint keeps the times of its last `limit` requests, and a new request may start only
once the oldest of them is a full window old.

A request's time is taken when its reply has arrived (`slot()`), the latest moment the server can
have counted it, so network latency and its jitter can never squeeze two requests into one server
window. `acquire()` alone stamps the start time (for callers that do not track completion).

Two implementations of one interface (`acquire`, `slot`, `pause`, `paused_for`, `rate`):

- `RateLimits`: the windows live in this process (threads share them);
- `RedisRateLimits`: the windows live in Redis (one atomic Lua script per request, Redis's own
  clock), so every process that uses the same Redis - prefork children, worker dynos, the
  feeder - shares one budget, as OKX does. If Redis cannot be reached it paces in-process at a
  conservative share of the limits until Redis answers again.

`shared_limits()` gives each process its limiter: the Redis one when a Redis URL is configured
(REDIS_URL, the broker), else the in-process one.

A 50011 or HTTP 429 means we are over anyway (a restart that forgot the last window, another
client on the same IP): `pause(path, seconds)` stops every caller of that endpoint - in this
process, or in every process sharing the Redis - until the server's window has rolled over.
"""
from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
import uuid
from collections import deque
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from prometheus_client import Counter

log = logging.getLogger(__name__)

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
RATE_FACTOR_ENV = "OKX_REST_RATE_FACTOR"


def endpoint_of(path: str) -> str:
    """'/api/v5/market/history-trades?x=1' -> '/market/history-trades' (the key OKX limits by)."""
    path = path.split("?", 1)[0]
    return path[len(API_PREFIX):] if path.startswith(API_PREFIX + "/") else path


def _share_from_env(name: str, default: float, environ: dict[str, str] | None) -> float:
    """A share in (0, 1] from the environment; a bad value is an error, not a silent default."""
    raw = (os.environ if environ is None else environ).get(name, "")
    if raw.strip() == "":
        return default
    try:
        share = float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number") from None
    if not 0 < share <= 1:
        raise ValueError(f"{name}={raw!r} must be in (0, 1]")
    return share


def rate_factor_from_env(environ: dict[str, str] | None = None) -> float:
    """OKX_REST_RATE_FACTOR: the share of OKX's limits the whole deployment uses."""
    return _share_from_env(RATE_FACTOR_ENV, DEFAULT_RATE_FACTOR, environ)


def earliest_start(stamps: deque[float], in_flight: int, limit: int, window: float,
                   now: float) -> float:
    """When the next request may start, given the (sorted) times of recent requests and those
    still in flight (pure). In-flight requests count as if stamped in the future."""
    used = len(stamps) + in_flight
    if used < limit:
        return now
    if in_flight >= limit:
        return float("inf")  # wait for a reply first
    # the (used - limit + 1) oldest stamps must leave the window
    return stamps[used - limit] + window


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


class _Pacer:
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


class RateLimits(_Pacer):
    """Per-endpoint sliding-window pacing, safe to share between threads."""

    def __init__(self, factor: float = DEFAULT_RATE_FACTOR,
                 limits: dict[str, tuple[int, float]] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 default: tuple[int, float] = DEFAULT_LIMIT) -> None:
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
                at = max(earliest_start(w.stamps, w.in_flight, w.limit, w.window, now),
                         w.paused_until)
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


# ----- shared by every process through Redis --------------------------------------------------

KEY_PREFIX = "ratelimit:"
# private endpoint groups: OKX counts these per user (API key), the rest per IP
PRIVATE_GROUPS = frozenset({"trade", "account", "asset", "finance", "users"})
# A reserved slot is counted as "in flight" until its reply arrives; if the process dies in
# between, the reservation still frees itself after this long (well above any REST timeout).
HOLD_S = 60.0
# While every counted request of a full window is still in flight there is no time to compute:
# waiters look again this often.
IN_FLIGHT_POLL_S = 0.02
# Without Redis, each process paces at this share of the deployment's limits, since it cannot see
# the others (a Procfile worker with -c 2 plus the feeder is already three processes).
FALLBACK_SHARE = 0.25
FALLBACK_SHARE_ENV = "OKX_REST_FALLBACK_SHARE"
# After Redis failed, stay on the fallback this long before asking Redis again, so an outage
# costs one connection attempt per interval, not one per request.
REDIS_RETRY_S = 5.0

FALLBACK_GRANTS = Counter("okx_rest_ratelimit_fallback",
                          "REST requests paced in-process because the shared Redis limiter "
                          "could not be reached", ["endpoint"])
REDIS_ERRORS = Counter("okx_rest_ratelimit_redis_errors",
                       "Errors talking to the shared Redis rate limiter (each one starts or "
                       "extends an in-process fallback period)")

# KEYS[1] the endpoint's log (ZSET member -> time counted, in µs of Redis TIME; a request still
# in flight is scored at grant + hold, i.e. in the future, so it counts in every window until its
# reply is in), KEYS[2] its pause flag. ARGV: limit, window µs, member, hold µs, poll µs.
# Returns 0 when the request may start (and records it), else the µs to wait before asking again.
_ACQUIRE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local paused = redis.call('PTTL', KEYS[2])
if paused > 0 then return paused * 1000 end
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local hold = tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local used = redis.call('ZCARD', KEYS[1])
if used < limit then
  redis.call('ZADD', KEYS[1], now + hold, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.ceil((window + hold) / 1000) + 1000)
  return 0
end
-- the (used - limit + 1) oldest entries must leave the window first
local blocking = redis.call('ZRANGE', KEYS[1], used - limit, used - limit, 'WITHSCORES')
local counted_at = tonumber(blocking[2])
if counted_at > now then return tonumber(ARGV[5]) end
return math.floor(counted_at + window - now) + 1
"""

# The reply is in: count the request from now (Redis TIME). ARGV: member, key TTL ms.
_FINISH_LUA = """
local t = redis.call('TIME')
redis.call('ZADD', KEYS[1], tonumber(t[1]) * 1000000 + tonumber(t[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

# Pause for ARGV[1] ms unless a longer pause is already set.
_PAUSE_LUA = """
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
end
return 1
"""


def fallback_share_from_env(environ: dict[str, str] | None = None) -> float:
    """OKX_REST_FALLBACK_SHARE: the share each process uses alone while Redis is unreachable."""
    return _share_from_env(FALLBACK_SHARE_ENV, FALLBACK_SHARE, environ)


def share_of(limits: dict[str, tuple[int, float]], share: float) -> dict[str, tuple[int, float]]:
    """The same windows with `share` of their requests (at least one): a process that cannot see
    the others keeps a fraction of the budget, and its first burst shrinks with it (pure)."""
    return {ep: (max(1, int(n * share)), window) for ep, (n, window) in limits.items()}


def account_label(api_key: str | None) -> str | None:
    """A short, stable stand-in for an API key in Redis key names (the key itself stays out)."""
    if not api_key:
        return None
    return hashlib.sha256(api_key.encode()).hexdigest()[:12]


class RedisRateLimits(_Pacer):
    """Per-endpoint sliding-window pacing shared by every process using the same Redis.

    Same interface and meaning as `RateLimits`; `factor` is the share of OKX's limits used by
    the whole deployment. Requests to private endpoints are counted per `account` (see
    `account_label`) when one is given, since OKX counts those per user.
    """

    def __init__(self, redis_client: Any, factor: float = DEFAULT_RATE_FACTOR,
                 limits: dict[str, tuple[int, float]] | None = None, *,
                 account: str | None = None, fallback_share: float = FALLBACK_SHARE,
                 retry_after_s: float = REDIS_RETRY_S, hold_s: float = HOLD_S,
                 prefix: str = KEY_PREFIX, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not 0 < factor <= 1:
            raise ValueError("factor must be in (0, 1]")
        if not 0 < fallback_share <= 1:
            raise ValueError("fallback_share must be in (0, 1]")
        self.factor = factor
        self.limits = dict(LIMITS if limits is None else limits)
        self.account = account
        self.prefix = prefix
        self.hold_s = hold_s
        self.retry_after_s = retry_after_s
        self._redis = redis_client
        self._acquire_script = redis_client.register_script(_ACQUIRE_LUA)
        self._finish_script = redis_client.register_script(_FINISH_LUA)
        self._pause_script = redis_client.register_script(_PAUSE_LUA)
        self._sleep = sleep
        self._clock = clock
        self.fallback = RateLimits(factor, share_of(self.limits, fallback_share), clock=clock,
                                   default=share_of({"": DEFAULT_LIMIT}, fallback_share)[""])
        self._state_lock = threading.Lock()
        self._down_until = 0.0      # clock() before which Redis is not asked again
        self._down = False          # in a fallback period (logged once per period)

    @classmethod
    def from_url(cls, url: str, factor: float = DEFAULT_RATE_FACTOR,
                 **kwargs: Any) -> "RedisRateLimits":
        import redis
        from core.redis_clients import tls_kwargs
        # short timeouts: a hung Redis must cost a request a second or two, then the fallback
        client = redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0,
                                      **tls_kwargs(url))
        return cls(client, factor, **kwargs)

    # ----- keys and limits ---------------------------------------------------------------------
    def _limit(self, endpoint: str) -> tuple[int, float]:
        limit, seconds = self.limits.get(endpoint, DEFAULT_LIMIT)
        return limit, seconds / self.factor

    def _keys(self, endpoint: str) -> tuple[str, str]:
        parts = endpoint.split("/")
        group = parts[1] if len(parts) > 1 else ""
        scope = f"{endpoint}@{self.account}" if self.account and group in PRIVATE_GROUPS \
            else endpoint
        # the hash tag keeps both keys of an endpoint in one slot (Redis Cluster)
        return f"{self.prefix}log:{{{scope}}}", f"{self.prefix}pause:{{{scope}}}"

    def rate(self, path: str) -> float:
        """The paced request rate (requests/s) for an endpoint, for the whole deployment."""
        limit, window = self._limit(endpoint_of(path))
        return limit / window

    # ----- Redis health ------------------------------------------------------------------------
    def _redis_usable(self) -> bool:
        return self._clock() >= self._down_until

    def _redis_failed(self, exc: Exception) -> None:
        REDIS_ERRORS.inc()
        with self._state_lock:
            self._down_until = self._clock() + self.retry_after_s
            first = not self._down
            self._down = True
        if first:
            # a connection error's text may carry the URL, and with it a password: its class
            # only; a server's reply (OOM, read-only replica, script error) is worth reading
            from redis.exceptions import ResponseError
            reason = type(exc).__name__
            if isinstance(exc, ResponseError):
                reason += f": {str(exc)[:200]}"
            log.warning("shared REST rate limits: Redis unavailable (%s); pacing in-process at "
                        "a share of the limits until it answers again", reason)

    def _redis_ok(self) -> None:
        if self._down:
            with self._state_lock:
                was_down, self._down = self._down, False
            if was_down:
                log.warning("shared REST rate limits: Redis is back; pacing is shared again")

    # ----- the interface -----------------------------------------------------------------------
    def _reserve(self, endpoint: str) -> tuple[tuple, float]:
        """Block until a request may start, count it in flight; return (token, seconds waited)."""
        from redis.exceptions import RedisError
        started = self._clock()
        limit, window = self._limit(endpoint)
        log_key, pause_key = self._keys(endpoint)
        member = f"{os.getpid()}:{uuid.uuid4().hex}"
        args = [limit, int(window * 1e6), member, int(self.hold_s * 1e6),
                int(IN_FLIGHT_POLL_S * 1e6)]
        while self._redis_usable():
            try:
                wait_us = int(self._acquire_script(keys=[log_key, pause_key], args=args))
            except (RedisError, OSError) as exc:
                self._redis_failed(exc)
                break
            self._redis_ok()
            if wait_us <= 0:
                return ("redis", log_key, member, window), self._clock() - started
            self._sleep(wait_us / 1e6)
        FALLBACK_GRANTS.labels(endpoint).inc()
        w, _ = self.fallback._reserve(endpoint)
        return ("local", w), self._clock() - started

    def _finish(self, token: tuple) -> None:
        from redis.exceptions import RedisError
        if token[0] == "local":
            self.fallback._finish(token[1])
            return
        _, log_key, member, window = token
        try:
            self._finish_script(keys=[log_key],
                                args=[member, int((window + self.hold_s) * 1000) + 1000])
        except (RedisError, OSError) as exc:
            # the reservation stays counted as in flight until its hold runs out: safe
            self._redis_failed(exc)

    def pause(self, path: str, seconds: float | None = None) -> None:
        """The server said we are over (50011 / 429): hold every request to this endpoint, in every
        process sharing the Redis, for `seconds` (default: one stretched window)."""
        from redis.exceptions import RedisError
        endpoint = endpoint_of(path)
        if seconds is None:
            seconds = self._limit(endpoint)[1]
        # always locally too: it costs nothing and holds this process if Redis is gone meanwhile
        self.fallback.pause(path, seconds)
        if not self._redis_usable():
            return
        try:
            self._pause_script(keys=[self._keys(endpoint)[1]],
                               args=[max(1, int(seconds * 1000))])
        except (RedisError, OSError) as exc:
            self._redis_failed(exc)

    def paused_for(self, path: str) -> float:
        """Seconds left in a pause of this endpoint (0 when not paused)."""
        from redis.exceptions import RedisError
        endpoint = endpoint_of(path)
        local = self.fallback.paused_for(path)
        if not self._redis_usable():
            return local
        try:
            ms = int(self._redis.pttl(self._keys(endpoint)[1]))
        except (RedisError, OSError) as exc:
            self._redis_failed(exc)
            return local
        return max(local, ms / 1000.0 if ms > 0 else 0.0)


_shared: dict[tuple, RateLimits | RedisRateLimits] = {}
_shared_lock = threading.Lock()
REDIS_URL_ENV = "REDIS_URL"


def shared_limits(redis_url: str | None = None,
                  api_key: str | None = None) -> RateLimits | RedisRateLimits:
    """The limits every RestClient of this process uses by default (created on first use, with
    OKX_REST_RATE_FACTOR read then): shared through Redis when `redis_url` is given or REDIS_URL
    is set, else in-process. `api_key` separates the private endpoints' budgets per OKX user."""
    if redis_url is None:
        redis_url = os.environ.get(REDIS_URL_ENV, "").strip() or None
    account = account_label(api_key) if redis_url else None
    key = (redis_url, account)
    with _shared_lock:
        limits = _shared.get(key)
        if limits is None:
            if redis_url:
                limits = RedisRateLimits.from_url(redis_url, rate_factor_from_env(),
                                                  account=account,
                                                  fallback_share=fallback_share_from_env())
            else:
                limits = RateLimits(rate_factor_from_env())
            _shared[key] = limits
        return limits
