"""The beat task that rebuilds derived data (core.contract.DERIVE_TASK, every DERIVE_EVERY_S).

Thin: take the rebuild lock (one rebuild at a time, whatever the number of workers), build a
Rebuilder from the per-process clients, run it. A run that finds the lock taken does nothing:
the holder is doing the same work, and the next beat comes soon.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import asdict
from typing import Any

from celery import Task

from core import keys
from core import settings as settings_mod
from core.contract import DERIVE_TASK
from core.errors import ConfigError
from tasks import clients
from tasks.app import app
from tasks.backfill import context
from tasks.derive.rebuild import Rebuilder

log = logging.getLogger(__name__)

_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class DeriveTask(Task):
    acks_late = True
    reject_on_worker_lost = True
    ignore_result = True


def rebuilder() -> Rebuilder:
    s = settings_mod.current()
    for name, value in (("VWAP_WINDOW_S", s.vwap_window_s), ("DERIVE_BATCH", s.derive_batch)):
        if value <= 0:
            raise ConfigError(f"{name} must be positive, got {value!r}")
    return Rebuilder(
        clients.mongo_db(),
        clients.state_redis(),
        context.ledger_redis(),
        window_ms=int(s.vwap_window_s * 1000),
        batch=s.derive_batch,
    )


def run_locked(r: Rebuilder, lock_ms: int) -> dict[str, Any] | None:
    """Run `r` under derive:lock; None when another rebuild holds it."""
    token = uuid.uuid4().hex
    if not r.state.set(keys.DERIVE_LOCK, token, nx=True, px=lock_ms):
        return None
    try:
        counts = r.run()
    finally:
        r.state.eval(_UNLOCK, 1, keys.DERIVE_LOCK, token)
    return asdict(counts)


@app.task(bind=True, base=DeriveTask, name=DERIVE_TASK)
def rebuild(self: DeriveTask, **_ignored: Any) -> dict[str, Any] | None:
    """Rebuild the candles and VWAP marks that stored trades made dirty (tasks/derive)."""
    s = settings_mod.current()
    out = run_locked(rebuilder(), lock_ms=int(max(60.0, s.derive_every_s * 12) * 1000))
    if out is None:
        log.info("derive: another rebuild holds the lock; skipped")
    elif out["dirty"] or out["candles"] or out["flagged"]:
        log.info(
            "derive: %d dirty minutes, %d candles, %d vwap marks, %d flags, %d instruments",
            out["dirty"],
            out["candles"],
            out["vwap"],
            out["flagged"],
            out["instruments"],
        )
    return out
