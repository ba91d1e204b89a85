"""Ingest tasks: one per record kind, named as in collector.contract.INGEST_TASKS.

Thin by design: validate the envelope (`check_batch`), hand the records to the writers, and
decide what a failure means. `handle_batch` holds that decision as a plain function (unit-tested
without a worker); the Celery task only turns its answer into `self.retry(...)`.

    transient storage error  -> retry with capped exponential backoff and jitter,
                                then dead letter (reason retries_exhausted)
    bad envelope (BadBatch)  -> dead letter at once (bad_batch); never retried
    bad records in a batch   -> the good ones are written, the bad ones dead-lettered (bad_records)
    any other error          -> dead letter at once (error)
    dead letter not storable -> retry at the longest backoff (the message is kept, not acked away)
"""
from __future__ import annotations

import logging
import os
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import pymongo.errors
import redis.exceptions
from celery import Task
from celery.exceptions import SoftTimeLimitExceeded
from prometheus_client import Counter

from collector.contract import INGEST_TASKS, BadBatch, check_batch
from tasks import clients, documents
from tasks import settings as settings_mod
from tasks.app import app
from tasks.deadletters import DeadLetters, make_doc
from tasks.settings import Settings
from tasks.writers import Store

log = logging.getLogger(__name__)

# Errors that go away by themselves: a MongoDB primary election or network blip, a Redis restart
# or load. NetworkTimeout and ServerSelectionTimeoutError are AutoReconnect subclasses; listed to
# say they are meant. BusyLoadingError is a redis ConnectionError. A soft time limit is treated as
# transient too: the writes are idempotent, so running the batch again is safe.
TRANSIENT: tuple[type[BaseException], ...] = (
    pymongo.errors.AutoReconnect,
    pymongo.errors.ServerSelectionTimeoutError,
    pymongo.errors.NetworkTimeout,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,
    SoftTimeLimitExceeded,
)

RECORDS = Counter("okx_ingest_records_total", "Records handled by the ingest tasks",
                  ["kind", "outcome"])
DEAD = Counter("okx_dead_letters_total", "Batches (or parts) sent to dead_letters", ["kind", "reason"])
RETRIES = Counter("okx_ingest_retries_total", "Ingest retries after transient errors", ["kind"])


def backoff(retries: int, base: float, cap: float, rng: Callable[[], float] = random.random) -> float:
    """Countdown before retry number `retries + 1`: base * 2**retries capped, with equal jitter
    (half fixed, half random), so many workers hitting the same outage spread their retries."""
    exp = min(cap, base * (2 ** retries))
    return exp / 2 + rng() * exp / 2


@dataclass
class Outcome:
    written: dict[str, int] = field(default_factory=dict)
    dead_letter: str | None = None       # id of the dead letter written, if any
    retry_in: float | None = None        # seconds: the caller must retry the task
    exc: BaseException | None = None


def handle_batch(kind: str, batch: Any, *, store: Any, dead: DeadLetters, settings: Settings,
                 task_name: str, task_id: str | None, retries: int,
                 write: Callable[..., dict] | None = None) -> Outcome:
    """Validate and store one batch; say what happened (see the module docstring)."""
    args = [batch]

    def to_dead(reason: str, exc: BaseException | None, doc_args: list = args, suffix: str = "") -> Outcome:
        doc = make_doc(task=task_name, task_id=task_id, args=doc_args, reason=reason, exc=exc,
                       retries=retries, suffix=suffix)
        try:
            where = dead.put(doc)
        except Exception as put_exc:  # noqa: BLE001 - nowhere to put it: keep the message
            log.error("cannot store dead letter %s (%r); keeping the message", doc["_id"], put_exc)
            return Outcome(retry_in=settings.retry_cap_s, exc=put_exc)
        DEAD.labels(kind, reason).inc()
        log.error("dead letter %s (%s) -> %s: %s records of %s, %s: %s", doc["_id"], reason, where,
                  doc["records"], task_name, doc["exc_type"], doc["exception"])
        return Outcome(dead_letter=doc["_id"], exc=exc)

    try:
        records = check_batch(batch, kind)
    except BadBatch as exc:
        return to_dead("bad_batch", exc)
    good, bad = documents.split_records(kind, records)
    try:
        written = (write or store.write)(kind, good, source=batch.get("source", "ws"))
    except TRANSIENT as exc:
        if retries < settings.retry_max:
            RETRIES.labels(kind).inc()
            delay = backoff(retries, settings.retry_base_s, settings.retry_cap_s)
            log.warning("%s: transient %r; retry %d/%d in %.1fs", task_name, exc, retries + 1,
                        settings.retry_max, delay)
            return Outcome(retry_in=delay, exc=exc)
        return to_dead("retries_exhausted", exc)
    except Exception as exc:  # noqa: BLE001 - not transient: retrying would not help
        log.exception("%s: cannot store batch", task_name)
        return to_dead("error", exc)
    RECORDS.labels(kind, "stored").inc(len(good))
    outcome = Outcome(written=written)
    if bad:
        RECORDS.labels(kind, "bad").inc(len(bad))
        part = dict(batch, records=[r for r, _ in bad])
        reasons = "; ".join(sorted({why for _, why in bad}))
        dl = to_dead("bad_records", BadBatch(reasons), doc_args=[part], suffix=":bad")
        if dl.retry_in is not None:
            return dl
        outcome.dead_letter = dl.dead_letter
    return outcome


# ----- test-only hook --------------------------------------------------------------------------------

def _write_with_test_pause(store: Store, settings: Settings) -> Callable[..., dict]:
    """OKX_TEST_PAUSE_AFTER=N / OKX_TEST_PAUSE_FILE=F (crash tests only): write the first N
    records; then, if F exists, take it (rename to F.held: only one run ever pauses), create
    F.reached and wait while F.held exists (at most 120 s); then write the rest."""
    def write(kind: str, records: list[dict], *, source: str = "ws") -> dict:
        n, path = settings.test_pause_after, settings.test_pause_file
        first = store.write(kind, records[:n], source=source)
        try:
            os.rename(path, path + ".held")
        except OSError:
            pass  # not armed, or another run took it
        else:
            open(path + ".reached", "w").close()
            deadline = time.monotonic() + 120
            while os.path.exists(path + ".held") and time.monotonic() < deadline:
                time.sleep(0.02)
        rest = store.write(kind, records[n:], source=source)
        return {k: first.get(k, 0) + rest.get(k, 0) for k in set(first) | set(rest)}
    return write


# ----- Celery tasks ----------------------------------------------------------------------------------

class IngestTask(Task):
    """Base for the ingest tasks: late ack, requeue when the worker is lost, no results."""

    acks_late = True                # ack after the writes, not before
    reject_on_worker_lost = True    # a killed child requeues the message instead of acking it
    ignore_result = True            # nothing reads results; no backend is configured
    max_retries = None              # retries are counted by handle_batch against settings.retry_max

    def ingest(self, kind: str, batch: Any) -> dict[str, Any]:
        s = settings_mod.current()
        try:
            store = Store(clients.mongo_db(), clients.state_redis(), s)
            dead = DeadLetters(clients.mongo_db(), clients.state_redis())
        except Exception as exc:  # noqa: BLE001 - no clients: keep the message, never ack it away
            log.error("%s: cannot open storage clients (%r); retrying", self.name, exc)
            raise self.retry(exc=exc, countdown=s.retry_cap_s, max_retries=None)
        write = _write_with_test_pause(store, s) if s.test_pause_after and s.test_pause_file else None
        out = handle_batch(kind, batch, store=store, dead=dead, settings=s, task_name=self.name,
                           task_id=self.request.id, retries=self.request.retries, write=write)
        if out.retry_in is not None:
            # Publishes a copy with retries+1 and an ETA, then this message is acked. Countdowns
            # stay below the visibility timeout (settings.retry_cap_s < visibility_timeout_s).
            raise self.retry(exc=out.exc, countdown=out.retry_in, max_retries=None)
        return {"written": out.written, "dead_letter": out.dead_letter}


def _make(kind: str) -> Task:
    s = settings_mod.current()

    def ingest(self: IngestTask, batch: Any, **_ignored: Any) -> dict[str, Any]:
        return self.ingest(kind, batch)

    ingest.__name__ = kind
    ingest.__doc__ = f"Store a batch of {kind} records (collector.contract envelope)."
    return app.task(ingest, bind=True, base=IngestTask, name=INGEST_TASKS[kind],
                    soft_time_limit=s.task_soft_time_limit_s, time_limit=s.task_time_limit_s)


trades = _make("trades")
tickers = _make("tickers")
candles = _make("candles")
books = _make("books")
orders = _make("orders")
balances = _make("balances")
positions = _make("positions")
