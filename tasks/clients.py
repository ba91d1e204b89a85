"""MongoDB and Redis clients, one set per process.

PyMongo is not fork-safe, so clients are never inherited: `worker_process_init` (each prefork
child, after the fork) drops whatever the parent had and opens new ones; anywhere else (solo or
threads pool, the migrate and dead-letter commands) they are opened lazily on first use, and
reopened if the pid changed. Tests and the bench hand in their own clients with `install()`.

The Mongo client is pymongo's, unless the setting MONGO_CLIENT_FACTORY names another factory as
"package.module:callable", called as `factory(uri, timeout_ms)`: the hook for offline stand-ins.
localrun sets `localrun.mongo_standin:client_for` (with MONGODB_URI=mongostandin://host:port)
for tests and the offline demo; production leaves it unset. It is resolved with importlib, so
tasks/ holds no import of localrun/.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from celery.signals import worker_process_init, worker_process_shutdown

from core import settings as settings_mod
from core.errors import ConfigError
from core.redis_clients import tls_kwargs

log = logging.getLogger(__name__)

_lock = threading.RLock()
_pid: int | None = None
_mongo: Any = None
_redis: Any = None
_installed: dict[str, Any] = {}
_indexes_done = False
_indexes_tried = 0.0


MongoFactory = Callable[[str, int], Any]


def resolve_factory(spec: str) -> MongoFactory:
    """ "package.module:callable" -> the callable (MONGO_CLIENT_FACTORY)."""
    module_name, _, attr = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"MONGO_CLIENT_FACTORY={spec!r} cannot be loaded: {exc}") from None
    if not callable(factory):
        raise ConfigError(f"MONGO_CLIENT_FACTORY={spec!r} is not callable")
    return factory


def make_mongo_client(uri: str, timeout_ms: int, factory: str = "") -> Any:
    """The Mongo client for `uri`: from `factory` ("module:callable") when one is named, else
    pymongo's."""
    if factory:
        return resolve_factory(factory)(uri, timeout_ms)
    return pymongo_client(uri, timeout_ms)


def pymongo_client(uri: str, timeout_ms: int) -> Any:
    from pymongo import MongoClient

    # Short selection/connect timeouts: an outage surfaces as ServerSelectionTimeoutError within
    # seconds and the task retries with backoff, instead of blocking a worker for 30 s.
    return MongoClient(
        uri,
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms,
        socketTimeoutMS=max(timeout_ms * 4, 20000),
        retryWrites=True,
        appname="okx-worker",
        event_listeners=[_server_back_listener()],
    )


def recheck_indexes() -> None:
    """Create the indexes again at the next batch (see _server_back_listener)."""
    global _indexes_done, _indexes_tried
    _indexes_done, _indexes_tried = False, 0.0


def _server_back_listener() -> Any:
    """A pymongo listener: when a server that was unreachable answers again, the indexes are
    checked again. A server can come back empty (data lost, a restore, a replaced node): the
    `_id`s keep writes idempotent without indexes, but the unique keys, the time indexes and the
    books TTL would be gone for good. Creating existing indexes again is a no-op."""
    from pymongo import monitoring
    from pymongo.server_type import SERVER_TYPE

    class ServerBack(monitoring.ServerListener):
        def opened(self, event: Any) -> None:
            pass

        def closed(self, event: Any) -> None:
            pass

        def description_changed(self, event: Any) -> None:
            was = event.previous_description.server_type
            now = event.new_description.server_type
            if was == SERVER_TYPE.Unknown and now != SERVER_TYPE.Unknown:
                recheck_indexes()

    return ServerBack()


def make_redis_client(url: str, timeout_s: float) -> Any:
    import redis
    from redis.backoff import ExponentialWithJitterBackoff
    from redis.retry import Retry

    # A few quick reconnects inside the client (a blip); longer outages go to the task's retry.
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        health_check_interval=30,
        retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), retries=3),
        **tls_kwargs(url),  # Heroku's rediss:// has a self-signed certificate
    )


def _ensure_process() -> None:
    global _pid, _mongo, _redis, _indexes_done
    if _pid != os.getpid():  # first use, or inherited across a fork: never reuse
        _pid, _mongo, _redis, _indexes_done = os.getpid(), None, None, False


def mongo_client() -> Any:
    global _mongo
    if "mongo" in _installed:
        return _installed["mongo"]
    with _lock:
        _ensure_process()
        if _mongo is None:
            s = settings_mod.current()
            _mongo = make_mongo_client(s.mongodb_uri, s.mongo_timeout_ms, s.mongo_client_factory)
        return _mongo


def mongo_db() -> Any:
    db = mongo_client()[settings_mod.current().mongodb_db]
    _maybe_ensure_indexes(db)
    return db


def state_redis() -> Any:
    global _redis
    if "redis" in _installed:
        return _installed["redis"]
    with _lock:
        _ensure_process()
        if _redis is None:
            s = settings_mod.current()
            _redis = make_redis_client(s.state_url, s.redis_timeout_s)
        return _redis


def _maybe_ensure_indexes(db: Any) -> None:
    """Create the unique indexes once per process (at most one attempt a minute while MongoDB is
    down). Idempotency never depends on them: `_id` is the natural key."""
    global _indexes_done, _indexes_tried
    if _indexes_done or time.monotonic() - _indexes_tried < 60:
        return
    _indexes_tried = time.monotonic()
    from tasks.writers.mongo_history import ensure_indexes

    try:
        ensure_indexes(db, books_retention_s=settings_mod.current().books_retention_s)
        _indexes_done = True
    except Exception as exc:  # noqa: BLE001 - logged; retried later, writes still idempotent
        log.warning("could not create MongoDB indexes yet: %r", exc)


def install(*, mongo: Any = None, redis: Any = None) -> None:
    """Use these clients in this process (tests, bench). install() with no args removes them."""
    global _indexes_done, _indexes_tried
    _installed.clear()
    if mongo is not None:
        _installed["mongo"] = mongo
    if redis is not None:
        _installed["redis"] = redis
    _indexes_done, _indexes_tried = False, 0.0


def close() -> None:
    global _mongo, _redis
    with _lock:
        for c in (_mongo, _redis):
            try:
                if c is not None:
                    c.close()
            except Exception:  # noqa: BLE001 - closing at shutdown
                pass
        _mongo = _redis = None


@worker_process_init.connect
def _open_after_fork(**_: Any) -> None:
    global _pid, _mongo, _redis
    # The parent's objects (if any) belong to the parent: forget them without closing its sockets.
    _pid, _mongo, _redis = None, None, None
    mongo_client()
    state_redis()


@worker_process_shutdown.connect
def _close_at_exit(**_: Any) -> None:
    close()
