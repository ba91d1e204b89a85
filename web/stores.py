"""The clients the read API uses, built once per process (never per request) and handed in.

Two Redis roles, as in the workers and the feeder (docs/data-model.md): `state` is the current
state (STATE_REDIS_URL, default REDIS_URL), `ledger` the broker Redis holding the gap ledger,
watermarks and heartbeats (REDIS_URL). One client serves both when the URLs are the same. Both
decode replies to str. `mongo` is the history database (MONGODB_DB).

`state_async` is an asyncio client on the same Redis: the latest-state endpoints (the hot path,
bench/api.py) await it on the event loop instead of taking a threadpool hop per request, and
never block the loop. It is web/resp.py's `RespClient` (one pipelined connection, a third of
redis.asyncio's CPU per command), or redis.asyncio for a TLS Redis (rediss://) and fakeredis'
async twin in the unit tests. Everything else uses the sync clients from `def` endpoints
(threadpool).

`Instruments` answers "is this an instrument we collect?" from the feeder's watermarks and the
state keys, re-read at most every few seconds (in the threadpool), so an unknown instId is a
clear 404 and a request for a known one costs no extra round trip.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis
import redis.asyncio

from core import keys
from core.redis_clients import tls_kwargs
from core.settings import WorkerSettings
from web.resp import RespClient

INSTRUMENTS_TTL_S = 5.0
MISS_RESCAN_S = 1.0  # an unknown instId re-reads the list at most this often


def redis_client(url: str, timeout_s: float) -> redis.Redis:
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        decode_responses=True,
        health_check_interval=30,
        **tls_kwargs(url),
    )


def async_redis_client(url: str, timeout_s: float) -> Any:
    if not url.startswith("rediss://"):
        return RespClient.from_url(url, timeout_s)
    return redis.asyncio.Redis.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        decode_responses=True,
        **tls_kwargs(url),
    )


_ASYNC_KWARGS = (
    "host",
    "port",
    "db",
    "username",
    "password",
    "socket_timeout",
    "socket_connect_timeout",
    "decode_responses",
    "unix_socket_path",
)


def async_twin(client: Any) -> Any:
    """An asyncio client on the same server as the sync `client` (tests hand in sync clients:
    redis-py's or fakeredis', whose twin shares its FakeServer)."""
    kw = dict(client.connection_pool.connection_kwargs)
    if type(client).__module__.startswith("fakeredis"):  # same (host, port): the same FakeServer
        import fakeredis

        return fakeredis.FakeAsyncRedis(
            server=kw.get("server"),
            host=kw["host"],
            port=kw["port"],
            decode_responses=kw.get("decode_responses", False),
        )
    if not issubclass(client.connection_pool.connection_class, redis.SSLConnection):
        return RespClient.like(client)
    if "path" in kw:
        kw["unix_socket_path"] = kw.pop("path")
    return redis.asyncio.Redis(**{k: v for k, v in kw.items() if k in _ASYNC_KWARGS})


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
    """The instruments with data: watermarks (ledger Redis) and state keys (state Redis).

    `known()` never does I/O; `stale()` says when `refresh()` (SCANs: run it off the event
    loop) should run: the list is older than `ttl_s`, or an unknown instId was asked for and
    the last read is older than MISS_RESCAN_S (a new instrument appears within a second, and a
    stream of unknown ids costs at most one rescan a second)."""

    state: Any
    ledger: Any
    ttl_s: float = INSTRUMENTS_TTL_S
    clock: Callable[[], float] = time.monotonic
    _known: frozenset[str] = frozenset()
    _read_at: float = float("-inf")
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def known(self) -> frozenset[str]:
        return self._known

    def stale(self, missing: str | None = None) -> bool:
        age = self.clock() - self._read_at
        return age > self.ttl_s or (
            missing is not None and missing not in self._known and age > MISS_RESCAN_S
        )

    def refresh(self) -> frozenset[str]:
        with self._lock:
            found = _state_instruments(self.state) | _instruments_in(self.ledger)
            self._known, self._read_at = frozenset(found), self.clock()
        return self._known

    def current(self) -> frozenset[str]:
        """The list, re-read first if stale (blocking: for `def` endpoints)."""
        return self.refresh() if self.stale() else self._known


@dataclass
class Stores:
    state: Any
    ledger: Any
    mongo: Any
    instruments: Instruments
    state_async: Any

    @classmethod
    def of(cls, state: Any, mongo: Any, ledger: Any = None, state_async: Any = None) -> Stores:
        ledger = state if ledger is None else ledger
        state_async = async_twin(state) if state_async is None else state_async
        return cls(state, ledger, mongo, Instruments(state, ledger), state_async)

    @classmethod
    def from_settings(cls, s: WorkerSettings) -> Stores:
        state = redis_client(s.state_url, s.redis_timeout_s)
        ledger = (
            state if s.state_url == s.redis_url else redis_client(s.redis_url, s.redis_timeout_s)
        )
        state_async = async_redis_client(s.state_url, s.redis_timeout_s)
        return cls.of(state, mongo_database(s), ledger, state_async)

    def close(self) -> None:
        for client in {id(self.state): self.state, id(self.ledger): self.ledger}.values():
            close = getattr(client, "close", None)
            if close is not None:
                close()
