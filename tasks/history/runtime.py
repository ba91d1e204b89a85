"""This process's history parts (breaker, parking lot, broker Redis client) and the drain task.

Built once per process (and again after a fork: a prefork child never reuses its parent's
sockets, as tasks/clients.py does for the storage clients). The breaker and the parked history
live on the broker Redis (REDIS_URL), next to the queues whose memory they share, so a state
Redis (STATE_REDIS_URL) that fails does not take the history path with it.
"""

from __future__ import annotations

import logging
import os
import uuid
from typing import Any

import redis
from celery import Task
from celery.signals import worker_ready

from core import contract, keys
from core import settings as settings_mod
from tasks import clients
from tasks.app import app
from tasks.derive.dirty import mark_stored
from tasks.history import (
    metrics,  # noqa: F401 - connects the worker's /metrics server
    overflow,
)
from tasks.history.breaker import Breaker
from tasks.history.drain import drain
from tasks.history.path import HistoryPath
from tasks.history.pending import Pending

log = logging.getLogger(__name__)

_parts: dict[str, Any] = {}


def broker_redis() -> Any:
    s = settings_mod.current()
    if s.state_url == s.redis_url:
        return clients.state_redis()  # one Redis: one client (and tests' installed one)
    if _parts.get("pid") != os.getpid() or "broker" not in _parts:
        _parts.clear()
        _parts["pid"] = os.getpid()
        _parts["broker"] = clients.make_redis_client(s.redis_url, s.redis_timeout_s)
    return _parts["broker"]


def parts() -> tuple[Breaker, Pending]:
    """This process's breaker and parking lot (rebuilt when the client or the pid changed)."""
    client = broker_redis()
    if _parts.get("client") is not client or _parts.get("pid") != os.getpid():
        s = settings_mod.current()
        _parts.update(
            pid=os.getpid(),
            client=client,
            breaker=Breaker(client, s),
            pending=Pending(client, s.history_pending_max_bytes),
        )
    return _parts["breaker"], _parts["pending"]


def reset() -> None:
    """Forget this process's parts (tests that install other clients or settings)."""
    _parts.clear()


def send_drain(token: str | None = None, countdown: float = 0.0) -> Any:
    return app.send_task(
        contract.HISTORY_DRAIN_TASK,
        kwargs={"token": token},
        queue=contract.HISTORY_QUEUE,
        countdown=countdown or None,
    )


def history_path(state: Any) -> HistoryPath:
    """The ingest task's path for one batch (state writer `state`: tasks.writers.RedisState)."""
    breaker, pending = parts()
    return HistoryPath(
        state=state,
        db=clients.mongo_db,
        breaker=breaker,
        pending=pending,
        settings=settings_mod.current(),
        send_drain=send_drain,
        ledger=pending.client,
    )


def repair_overflow_gaps(client: Any) -> int:
    """Ask backfill to repair the open gaps the backlog bound recorded (MongoDB is back)."""
    sent = 0
    for gid in client.zrange(keys.GAPS_OPEN, 0, -1):
        gap_id = gid.decode() if isinstance(gid, bytes) else str(gid)
        fields = client.hmget(keys.gap_key(gap_id), "cause", "status")
        cause, status = (v.decode() if isinstance(v, bytes) else v for v in fields)
        if cause == overflow.CAUSE and status == "open":
            app.send_task(contract.REPAIR_GAP_TASK, args=[gap_id], queue=contract.BACKFILL_QUEUE)
            sent += 1
    if sent:
        log.warning("history: asked backfill to repair %d overflow gaps", sent)
    return sent


def mark_drained(parts: list) -> None:
    """Drained trades are stored now: their minutes' candles and VWAP are rebuilt (tasks/derive
    reads its marks on the state Redis, which may be away while history flows)."""
    try:
        mark_stored(clients.state_redis(), parts)
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        log.warning("cannot mark drained trades for the candle/VWAP rebuild (%r)", exc)


class DrainTask(Task):
    acks_late = True
    reject_on_worker_lost = True  # a killed drain's chunk stays in history:draining anyway
    ignore_result = True  # the result is for Flower (task events), nothing reads a backend


@app.task(bind=True, base=DrainTask, name=contract.HISTORY_DRAIN_TASK)
def drain_task(self: DrainTask, token: str | None = None, **_ignored: Any) -> str:
    """Write parked history into MongoDB; probe the breaker. Returns one line for Flower."""
    breaker, pending = parts()
    result = drain(
        breaker=breaker,
        pending=pending,
        db=clients.mongo_db,
        settings=settings_mod.current(),
        token=token or uuid.uuid4().hex,
        on_closed=lambda: repair_overflow_gaps(pending.client),
        follow_up=send_drain,
        on_stored=mark_drained,
    )
    return result.summary()


@worker_ready.connect
def _serve_metrics(**_: Any) -> None:
    """The main worker process serves /metrics once the pool is up (WORKER_METRICS_PORT)."""
    port = settings_mod.current().metrics_port
    if port:
        metrics.serve(port, broker_redis)
