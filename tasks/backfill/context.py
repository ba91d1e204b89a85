"""Per-process handles for backfill: the ledger Redis (the broker Redis, where the feeder writes
its gap ledger and watermarks), the store, the REST source. Tests replace them with install()."""

from __future__ import annotations

import os
import threading
from typing import Any

from core import settings as settings_mod
from tasks import clients
from tasks.backfill.ledger import GapLedger
from tasks.backfill.source import rest_source
from tasks.writers import Store

_lock = threading.Lock()
_ledger_client: tuple[int, str, Any] | None = None
_installed: dict[str, Any] = {}


def ledger_redis() -> Any:
    """A client on REDIS_URL (the feeder's ledger lives next to the broker), opened per process."""
    global _ledger_client
    if "ledger_redis" in _installed:
        return _installed["ledger_redis"]
    s = settings_mod.current()
    with _lock:
        if (
            _ledger_client is None
            or _ledger_client[0] != os.getpid()
            or _ledger_client[1] != s.redis_url
        ):
            _ledger_client = (
                os.getpid(),
                s.redis_url,
                clients.make_redis_client(s.redis_url, s.redis_timeout_s),
            )
        return _ledger_client[2]


def ledger() -> GapLedger:
    s = settings_mod.current()
    return GapLedger(ledger_redis(), lease_ms=int(s.backfill_lease_s * 1000))


def store() -> Store:
    return Store(clients.mongo_db(), clients.state_redis(), settings_mod.current())


def source() -> Any:
    if "source" in _installed:
        return _installed["source"]
    return rest_source(settings_mod.current())


def install(*, ledger_redis: Any = None, source: Any = None) -> None:
    """Tests: use these instead (install() with no args removes them)."""
    _installed.clear()
    if ledger_redis is not None:
        _installed["ledger_redis"] = ledger_redis
    if source is not None:
        _installed["source"] = source
