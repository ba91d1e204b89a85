"""The clients the read API uses, built once per process (never per request) and handed in.

Two Redis roles, as in the workers and the feeder (docs/data-model.md): `state` is the current
state (STATE_REDIS_URL, default REDIS_URL), `ledger` the broker Redis holding the gap ledger,
watermarks and heartbeats (REDIS_URL). One client serves both when the URLs are the same. Both
decode replies to str. `mongo` is the history database (MONGODB_DB).

`Instruments` answers "is this an instrument we collect?" from the feeder's watermarks and the
state keys, re-read at most every few seconds, so an unknown instId is a clear 404 and a request
for a known one costs no extra round trip.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis

from core import keys
from core.redis_clients import tls_kwargs
from core.settings import WorkerSettings

INSTRUMENTS_TTL_S = 5.0


def redis_client(url: str, timeout_s: float) -> redis.Redis:
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        decode_responses=True,
        health_check_interval=30,
        **tls_kwargs(url),
    )


def mongo_database(s: WorkerSettings) -> Any:
    from tasks.clients import make_mongo_client  # pymongo, or the configured stand-in factory

    return make_mongo_client(s.mongodb_uri, s.mongo_timeout_ms, s.mongo_client_factory)[
        s.mongodb_db
    ]


def _instruments_in(r: Any) -> set[str]:
    found: set[str] = set()
    for name in r.scan_iter(match=keys.WATERMARK_PATTERN, count=1000):
        found.add(keys.parse_watermark_key(name)[1])
    return found


def _state_instruments(r: Any) -> set[str]:
    found: set[str] = set()
    for prefix, pattern in (
        (keys.TICKER_PREFIX, keys.TICKER_PATTERN),
        (keys.TRADES_PREFIX, keys.TRADES_PATTERN),
        (keys.BOOKS5_PREFIX, keys.BOOKS5_PATTERN),
    ):
        for name in r.scan_iter(match=pattern, count=1000):
            found.add(name[len(prefix) :])
    return found


@dataclass
class Instruments:
    """The instruments with data: watermarks (ledger Redis) and state keys (state Redis)."""

    state: Any
    ledger: Any
    ttl_s: float = INSTRUMENTS_TTL_S
    clock: Callable[[], float] = time.monotonic
    _known: frozenset[str] = frozenset()
    _read_at: float = float("-inf")
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def known(self) -> frozenset[str]:
        now = self.clock()
        if now - self._read_at > self.ttl_s:
            with self._lock:
                if now - self._read_at > self.ttl_s:
                    found = _state_instruments(self.state)
                    found |= _instruments_in(self.ledger)
                    self._known, self._read_at = frozenset(found), now
        return self._known

    def __contains__(self, inst_id: str) -> bool:
        if inst_id in self.known():
            return True
        self._read_at = float("-inf")  # a new instrument: look again before saying no
        return inst_id in self.known()


@dataclass
class Stores:
    state: Any
    ledger: Any
    mongo: Any
    instruments: Instruments

    @classmethod
    def of(cls, state: Any, mongo: Any, ledger: Any = None) -> Stores:
        ledger = state if ledger is None else ledger
        return cls(state, ledger, mongo, Instruments(state, ledger))

    @classmethod
    def from_settings(cls, s: WorkerSettings) -> Stores:
        state = redis_client(s.state_url, s.redis_timeout_s)
        ledger = (
            state if s.state_url == s.redis_url else redis_client(s.redis_url, s.redis_timeout_s)
        )
        return cls.of(state, mongo_database(s), ledger)

    def close(self) -> None:
        for client in {id(self.state): self.state, id(self.ledger): self.ledger}.values():
            close = getattr(client, "close", None)
            if close is not None:
                close()
