"""The MongoDB circuit breaker, shared by every worker process: its state is one Redis hash.

    closed     the ingest task writes history inline (after the state), under a short timeout
    open       MongoDB is known down, hung or slow: ingest parks history (pending.py) and never
               waits for MongoDB; HISTORY_BREAKER_OPEN_S after it opened, the next check hands
               the probe to one drain task
    half_open  that one probe (a drain task holding the drain lease) runs; everyone else parks

Every transition is one Lua script (check, failure, close, claim, release), so two workers
never both take the probe, and a probe whose drain task was lost is taken again once its lease
(HISTORY_DRAIN_LEASE_S) ran out. `check` also says when parked history waits while the breaker
is closed, so a drain is sent then too.

A worker reads the breaker at most once per HISTORY_BREAKER_CACHE_S (per process, one EVALSHA):
the ingest hot path pays one round trip per batch at most, and a worker that opened the breaker
itself parks at once without waiting for its cache to expire.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core import keys
from core.settings import WorkerSettings as Settings

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
STATES = (CLOSED, OPEN, HALF_OPEN)

# KEYS: breaker hash, pending bytes. ARGV: now_ms, open_ms, lease_ms, token.
# -> {state, failures, pending bytes, kick (1: send a drain task carrying `token`)}
CHECK = """
local h = redis.call('HMGET', KEYS[1], 'state', 'failures', 'opened_ms', 'drain_until_ms')
local state = h[1] or 'closed'
local failures = tonumber(h[2] or '0')
local opened = tonumber(h[3] or '0')
local lease_end = tonumber(h[4] or '0')
local now = tonumber(ARGV[1])
local pending = tonumber(redis.call('GET', KEYS[2]) or '0')
local kick = 0
if now >= lease_end then
  if state == 'closed' then
    if pending > 0 then kick = 1 end
  elseif state == 'open' then
    if now >= opened + tonumber(ARGV[2]) then
      kick = 1
      state = 'half_open'
      redis.call('HSET', KEYS[1], 'state', state, 'changed_ms', now)
    end
  else
    kick = 1
  end
  if kick == 1 then
    redis.call('HSET', KEYS[1], 'drain_until_ms', now + tonumber(ARGV[3]), 'drain_token', ARGV[4])
  end
end
return {state, failures, pending, kick}
"""

# KEYS: breaker hash. ARGV: now_ms, threshold, reason. -> {state, failures, opened now (0/1)}
FAILURE = """
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
redis.call('HSET', KEYS[1], 'reason', ARGV[3])
if state == 'half_open' or (state == 'closed' and failures >= tonumber(ARGV[2])) then
  redis.call('HSET', KEYS[1], 'state', 'open', 'opened_ms', ARGV[1], 'changed_ms', ARGV[1])
  return {'open', failures, 1}
end
return {state, failures, 0}
"""

# KEYS: breaker hash. ARGV: now_ms. A probe that went well: closed, failures forgotten.
CLOSE = """
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
redis.call('HSET', KEYS[1], 'state', 'closed', 'failures', 0, 'reason', '')
if state ~= 'closed' then redis.call('HSET', KEYS[1], 'changed_ms', ARGV[1]) end
return state
"""

# KEYS: breaker hash. ARGV: now_ms. A slow probe: open again from now (the drain keeps writing).
REOPEN = """
redis.call('HSET', KEYS[1], 'state', 'open', 'opened_ms', ARGV[1], 'changed_ms', ARGV[1],
           'reason', ARGV[2])
return 1
"""

# KEYS: breaker hash. ARGV: now_ms, lease_ms, token, probing (1/0). The drain lease: the caller's
# own (from a kick, or renewed), or a free one. An open breaker whose drain claims it to probe
# is half_open; a lease taken ahead for a drain that runs later (probing 0) leaves it open.
CLAIM = """
local h = redis.call('HMGET', KEYS[1], 'drain_until_ms', 'drain_token', 'state')
local lease_end = tonumber(h[1] or '0')
local now = tonumber(ARGV[1])
if now >= lease_end or h[2] == ARGV[3] then
  redis.call('HSET', KEYS[1], 'drain_until_ms', now + tonumber(ARGV[2]), 'drain_token', ARGV[3])
  if h[3] == 'open' and ARGV[4] == '1' then
    redis.call('HSET', KEYS[1], 'state', 'half_open', 'changed_ms', now)
  end
  return 1
end
return 0
"""

# KEYS: breaker hash. ARGV: token. Give the drain lease back (only its holder can).
RELEASE = """
if redis.call('HGET', KEYS[1], 'drain_token') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'drain_until_ms', 0)
  return 1
end
return 0
"""


@dataclass(frozen=True)
class Reading:
    state: str
    failures: int
    pending_bytes: int
    kick: str | None = None  # a drain token: the caller sends the drain task with it

    @property
    def writes_inline(self) -> bool:
        return self.state == CLOSED


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


class Breaker:
    """One breaker (`name`) in Redis `client` (the broker Redis), with a per-process cache."""

    def __init__(
        self,
        client: Any,
        settings: Settings,
        name: str = keys.MONGO_BREAKER,
        *,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self.client = client
        self.s = settings
        self.key = keys.history_breaker(name)
        self.clock_ms = clock_ms
        self.monotonic = monotonic
        self._check = client.register_script(CHECK)
        self._failure = client.register_script(FAILURE)
        self._close = client.register_script(CLOSE)
        self._reopen = client.register_script(REOPEN)
        self._claim = client.register_script(CLAIM)
        self._release = client.register_script(RELEASE)
        self._cached: Reading | None = None
        self._cached_until = 0.0

    # ----- ingest ---------------------------------------------------------------------------
    def check(self) -> Reading:
        """The breaker now: from the cache, or one script call (which may hand out the probe)."""
        if self._cached is not None and self.monotonic() < self._cached_until:
            return self._cached
        token = uuid.uuid4().hex
        state, failures, pending, kick = self._check(
            keys=[self.key, keys.HISTORY_PENDING_BYTES],
            args=[
                self.clock_ms(),
                int(self.s.history_breaker_open_s * 1000),
                int(self.s.history_drain_lease_s * 1000),
                token,
            ],
        )
        reading = Reading(_text(state), int(failures), int(pending), token if kick else None)
        self._remember(Reading(reading.state, reading.failures, reading.pending_bytes))
        return reading

    def failure(self, reason: str, *, slow: bool = False) -> bool:
        """Count a failed (or, `slow`, a slow) MongoDB write; True if this call opened the
        breaker (after HISTORY_BREAKER_FAILURES failures, HISTORY_SLOW_WRITES slow ones)."""
        threshold = self.s.history_slow_writes if slow else self.s.history_breaker_failures
        state, failures, opened = self._failure(
            keys=[self.key], args=[self.clock_ms(), threshold, reason[:200]]
        )
        self._remember(Reading(_text(state), int(failures), 0))
        return bool(opened)

    def success(self) -> None:
        """An inline write went well: forget earlier failures (a round trip only if there were)."""
        if self._cached is not None and self._cached.failures and self._cached.state == CLOSED:
            self.close()

    def _remember(self, reading: Reading) -> None:
        self._cached = reading
        self._cached_until = self.monotonic() + self.s.history_breaker_cache_s

    # ----- drain ----------------------------------------------------------------------------
    def close(self) -> str:
        """MongoDB answered fast: closed. Returns the state it had."""
        self._cached = None
        return _text(self._close(keys=[self.key], args=[self.clock_ms()]))

    def reopen(self, reason: str) -> None:
        """MongoDB answered, but slowly: open again from now (ingest keeps parking)."""
        self._cached = None
        self._reopen(keys=[self.key], args=[self.clock_ms(), reason[:200]])

    def claim(self, token: str, extra_s: float = 0.0, *, probing: bool = True) -> bool:
        """Take (or renew) the drain lease for `token`, for the lease time plus `extra_s`;
        `probing`: the caller probes now (open -> half_open)."""
        lease_ms = int((self.s.history_drain_lease_s + extra_s) * 1000)
        args = [self.clock_ms(), lease_ms, token, 1 if probing else 0]
        return bool(self._claim(keys=[self.key], args=args))

    def release(self, token: str) -> None:
        self._release(keys=[self.key], args=[token])

    # ----- status ---------------------------------------------------------------------------
    def read(self) -> dict[str, str]:
        """The stored hash as text (status, metrics); {} while nothing happened yet."""
        return {_text(k): _text(v) for k, v in self.client.hgetall(self.key).items()}


def describe(fields: dict[str, str], pending_bytes: int, now_ms: int) -> dict[str, Any]:
    """The breaker and backlog as `collector status` and /metrics show them (pure)."""
    state = fields.get("state") or CLOSED
    changed = int(fields.get("changed_ms") or 0)
    return {
        "state": state if state in STATES else CLOSED,
        "failures": int(fields.get("failures") or 0),
        "reason": fields.get("reason", ""),
        "since_s": round((now_ms - changed) / 1000, 1) if changed else None,
        "pending_bytes": pending_bytes,
    }
