"""OKX REST rate limits shared through Redis by every process of a deployment.

The pacing itself (sliding windows, the `Pacer` base, the OKX limits table) is pure and lives in
okx/rest/ratelimit.py; okx/ imports no Redis, so the Redis-backed limiter lives here.

`RedisRateLimits`: the windows live in Redis (one atomic Lua script per request, Redis's own
clock), so every process that uses the same Redis - prefork children, worker dynos, the feeder -
shares one budget, as OKX does. If Redis cannot be reached it paces in-process at a conservative
share of the limits (`fallback_share`) until Redis answers again. Its keys: core/keys.py.

`shared_limits(redis_url, ...)` gives each process its limiter: the Redis one for a Redis URL,
else the in-process one. The rate factor and fallback share come from the caller's settings
(OKX_REST_RATE_FACTOR, OKX_REST_FALLBACK_SHARE in core/settings.py).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from prometheus_client import Counter

from core import keys
from core.redis_clients import tls_kwargs
from okx.rest.ratelimit import (
    DEFAULT_LIMIT,
    DEFAULT_RATE_FACTOR,
    FALLBACK_SHARE,
    LIMITS,
    Pacer,
    RateLimits,
    endpoint_of,
    process_limits,
    share_of,
)

log = logging.getLogger(__name__)

KEY_PREFIX = keys.RATELIMIT_PREFIX
# private endpoint groups: OKX counts these per user (API key), the rest per IP
PRIVATE_GROUPS = frozenset({"trade", "account", "asset", "finance", "users"})
# A reserved slot is counted as "in flight" until its reply arrives; if the process dies in
# between, the reservation still frees itself after this long (well above any REST timeout).
HOLD_S = 60.0
# While every counted request of a full window is still in flight there is no time to compute:
# waiters look again this often.
IN_FLIGHT_POLL_S = 0.02
# After Redis failed, stay on the fallback this long before asking Redis again, so an outage
# costs one connection attempt per interval, not one per request.
REDIS_RETRY_S = 5.0

FALLBACK_GRANTS = Counter(
    "okx_rest_ratelimit_fallback",
    "REST requests paced in-process because the shared Redis limiter could not be reached",
    ["endpoint"],
)
REDIS_ERRORS = Counter(
    "okx_rest_ratelimit_redis_errors",
    "Errors talking to the shared Redis rate limiter (each one starts or "
    "extends an in-process fallback period)",
)

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


def account_label(api_key: str | None) -> str | None:
    """A short, stable stand-in for an API key in Redis key names (the key itself stays out)."""
    if not api_key:
        return None
    return hashlib.sha256(api_key.encode()).hexdigest()[:12]


class RedisRateLimits(Pacer):
    """Per-endpoint sliding-window pacing shared by every process using the same Redis.

    Same interface and meaning as `RateLimits`; `factor` is the share of OKX's limits used by
    the whole deployment. Requests to private endpoints are counted per `account` (see
    `account_label`) when one is given, since OKX counts those per user.
    """

    def __init__(
        self,
        redis_client: Any,
        factor: float = DEFAULT_RATE_FACTOR,
        limits: dict[str, tuple[int, float]] | None = None,
        *,
        account: str | None = None,
        fallback_share: float = FALLBACK_SHARE,
        retry_after_s: float = REDIS_RETRY_S,
        hold_s: float = HOLD_S,
        prefix: str = KEY_PREFIX,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
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
        self.fallback = RateLimits(
            factor,
            share_of(self.limits, fallback_share),
            clock=clock,
            default=share_of({"": DEFAULT_LIMIT}, fallback_share)[""],
        )
        self._state_lock = threading.Lock()
        self._down_until = 0.0  # clock() before which Redis is not asked again
        self._down = False  # in a fallback period (logged once per period)

    @classmethod
    def from_url(
        cls, url: str, factor: float = DEFAULT_RATE_FACTOR, **kwargs: Any
    ) -> RedisRateLimits:
        import redis

        # short timeouts: a hung Redis must cost a request a second or two, then the fallback
        client = redis.Redis.from_url(
            url, socket_timeout=2.0, socket_connect_timeout=2.0, **tls_kwargs(url)
        )
        return cls(client, factor, **kwargs)

    # ----- keys and limits ---------------------------------------------------------------------
    def _limit(self, endpoint: str) -> tuple[int, float]:
        limit, seconds = self.limits.get(endpoint, DEFAULT_LIMIT)
        return limit, seconds / self.factor

    def _keys(self, endpoint: str) -> tuple[str, str]:
        parts = endpoint.split("/")
        group = parts[1] if len(parts) > 1 else ""
        scope = (
            f"{endpoint}@{self.account}" if self.account and group in PRIVATE_GROUPS else endpoint
        )
        # the hash tag keeps both keys of an endpoint in one slot (Redis Cluster)
        return keys.ratelimit_log(scope, self.prefix), keys.ratelimit_pause(scope, self.prefix)

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
            log.warning(
                "shared REST rate limits: Redis unavailable (%s); pacing in-process at "
                "a share of the limits until it answers again",
                reason,
            )

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
        args = [
            limit,
            int(window * 1e6),
            member,
            int(self.hold_s * 1e6),
            int(IN_FLIGHT_POLL_S * 1e6),
        ]
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
            self._finish_script(
                keys=[log_key], args=[member, int((window + self.hold_s) * 1000) + 1000]
            )
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
            self._pause_script(keys=[self._keys(endpoint)[1]], args=[max(1, int(seconds * 1000))])
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


def shared_limits(
    redis_url: str | None = None,
    api_key: str | None = None,
    *,
    factor: float = DEFAULT_RATE_FACTOR,
    fallback_share: float = FALLBACK_SHARE,
) -> RateLimits | RedisRateLimits:
    """The limiter of this process for `redis_url` (created on first use, with the factor and
    fallback share of that call; callers pass them from their settings): shared through Redis
    when a URL is given, else okx's in-process `process_limits()`, the one a RestClient given
    no limiter uses. `api_key` separates the private endpoints' budgets per OKX user."""
    if not redis_url:
        return process_limits(factor)
    account = account_label(api_key)
    key = (redis_url, account)
    with _shared_lock:
        limits = _shared.get(key)
        if limits is None:
            limits = _shared[key] = RedisRateLimits.from_url(
                redis_url, factor, account=account, fallback_share=fallback_share
            )
        return limits
