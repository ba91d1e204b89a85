"""Ingest tasks: one per record kind, named as in core.contract.INGEST_TASKS.

Thin by design: validate the envelope (`check_batch`), hand the records to the writers, and
decide what a failure means. `handle_batch` holds that decision as a plain function (unit-tested
without a worker); the Celery task only turns its answer into `self.retry(...)`.

    transient storage error  -> retry with capped exponential backoff and jitter (okx.backoff:
                                INGEST_RETRY_BASE_S doubling up to INGEST_RETRY_CAP_S),
                                then dead letter (reason retries_exhausted)
    bad envelope (BadBatch)  -> dead letter at once (bad_batch); never retried
    bad records in a batch   -> the good ones are written, the bad ones dead-lettered (bad_records)
    any other writer error   -> dead letter at once (error)
    a bug anywhere else      -> dead letter at once (internal_error): a batch that makes the
                                handling itself raise is never a crashed task or a retry loop
    dead letter not storable -> MongoDB/Redis down: retry at the longest backoff (the message is
                                kept, not acked away); the document itself refused (a value
                                BSON/JSON cannot hold): stored again with its args as text
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pymongo.errors
import redis.exceptions
from celery import Task
from celery.exceptions import SoftTimeLimitExceeded
from prometheus_client import Counter

from core import settings as settings_mod
from core.contract import INGEST_MIXED_TASK, INGEST_TASKS, check_batch
from core.errors import BadBatch
from core.settings import WorkerSettings as Settings
from okx.backoff import backoff_delay
from tasks import clients, documents
from tasks.app import app
from tasks.deadletters import DeadLetters, make_doc
from tasks.history import runtime as history_runtime
from tasks.ingest_dead import put_dead
from tasks.ingest_dedupe import count_dropped, stored_marks, write_new
from tasks.ingest_pause import write_with_test_pause
from tasks.writers import Store
from tasks.writers.seen import Marks, Seen

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

RECORDS = Counter(
    "okx_ingest_records_total", "Records handled by the ingest tasks", ["kind", "outcome"]
)
DEAD = Counter(
    "okx_dead_letters_total", "Batches (or parts) sent to dead_letters", ["kind", "reason"]
)
RETRIES = Counter("okx_ingest_retries_total", "Ingest retries after transient errors", ["kind"])


@dataclass
class Outcome:
    retry_in: float | None = None  # seconds: the caller must retry the task
    exc: BaseException | None = None
    written_by_kind: dict[str, dict[str, int]] = field(default_factory=dict)
    dead_letters: list[str] = field(default_factory=list)  # ids, in the order written

    @property
    def written(self) -> dict[str, int]:
        """The counts of the first (for handle_batch: the only) kind stored."""
        return next(iter(self.written_by_kind.values()), {})

    @property
    def dead_letter(self) -> str | None:
        """The first dead letter written, if any."""
        return self.dead_letters[0] if self.dead_letters else None


# One envelope to handle: (kind, envelope, the task name its dead letters carry, dead-letter id)
Item = tuple[str, Any, str, "str | None"]


def handle_batch(
    kind: str,
    batch: Any,
    *,
    store: Any,
    dead: DeadLetters,
    settings: Settings,
    task_name: str,
    task_id: str | None,
    retries: int,
    write_many: Callable[..., list] | None = None,
    history: Any = None,
    seen: Seen | None = None,
) -> Outcome:
    """Validate and store one batch; say what happened (see the module docstring)."""
    return handle_batches(
        [(kind, batch, task_name, task_id)],
        store=store,
        dead=dead,
        settings=settings,
        retries=retries,
        write_many=write_many,
        history=history,
        seen=seen,
    )


def handle_batches(
    items: list[Item],
    *,
    store: Any,
    dead: DeadLetters,
    settings: Settings,
    retries: int,
    write_many: Callable[..., list] | None = None,
    history: Any = None,
    seen: Seen | None = None,
) -> Outcome:
    """`_handle_batches`, and whatever it raises unexpectedly dead-lettered (internal_error).
    `history` (tasks/history/path.py's HistoryPath) puts history on its own path: state
    first, then MongoDB inline or parked while the breaker is open; without it (unit tests)
    `store.write_many` writes both, retried as one. `seen` (tasks/writers/seen.py) drops the
    records already stored before any write and marks the ones this batch stored."""
    # `write_many` wins (the task passes the history path's, possibly inside the pause hook)
    write = write_many or (history.write_many if history is not None else None)
    kw = dict(
        store=store, dead=dead, settings=settings, retries=retries, write_many=write, seen=seen
    )
    try:
        return _handle_batches(items, **kw)
    except Exception as exc:  # noqa: BLE001 - a bug must not crash the task or loop on retries
        log.exception("%s: handling the batch failed unexpectedly", items[0][2] if items else "?")
        out = Outcome(exc=exc)
        for kind, batch, task_name, task_id in items:
            doc = make_doc(task=task_name, task_id=task_id, args=[batch], reason="internal_error",
                           exc=exc, retries=retries)  # fmt: skip
            refused = put_dead(dead, doc, TRANSIENT)
            if refused is not None:
                return Outcome(retry_in=settings.retry_cap_s, exc=refused)
            DEAD.labels(kind, "internal_error").inc()
            out.dead_letters.append(doc["_id"])
        return out


def _handle_batches(
    items: list[Item],
    *,
    store: Any,
    dead: DeadLetters,
    settings: Settings,
    retries: int,
    write_many: Callable[..., list] | None = None,
    seen: Seen | None = None,
) -> Outcome:
    """Validate several envelopes and store their good records together: every kind's state in
    one Redis round trip, then history per kind. Each envelope's bad input is dead-lettered
    on its own, under its own task name and id. A transient error retries them all (every write
    is idempotent, and dead letters are keyed by id, so running them again changes nothing)."""
    out = Outcome()

    def to_dead(
        item: Item,
        reason: str,
        exc: BaseException | None,
        doc_args: list | None = None,
        suffix: str = "",
    ) -> Outcome | None:
        kind, batch, task_name, task_id = item
        doc = make_doc(
            task=task_name,
            task_id=task_id,
            args=doc_args or [batch],
            reason=reason,
            exc=exc,
            retries=retries,
            suffix=suffix,
        )
        refused = put_dead(dead, doc, TRANSIENT)
        if refused is not None:
            return Outcome(retry_in=settings.retry_cap_s, exc=refused)
        DEAD.labels(kind, reason).inc()
        log.error(
            "dead letter %s (%s): %s records of %s, %s: %s",
            doc["_id"],
            reason,
            doc["records"],
            task_name,
            doc["exc_type"],
            doc["exception"],
        )
        out.dead_letters.append(doc["_id"])
        if out.exc is None:
            out.exc = exc
        return None

    parts: list[tuple[str, list]] = []
    good_items: list[Item] = []
    bad_parts: list[tuple[Item, list]] = []
    for item in items:
        kind, batch = item[0], item[1]
        try:
            records = check_batch(batch, kind)
        except BadBatch as exc:
            kept = to_dead(item, "bad_batch", exc)
            if kept is not None:
                return kept
            continue
        good, bad = documents.split_records(kind, records)
        parts.append((kind, good))
        good_items.append(item)
        if bad:
            bad_parts.append((item, bad))
    dropped: list[int] = [0] * len(parts)
    marks: Marks = []
    if parts and seen is not None:
        parts, dropped, marks = seen.drop_seen(parts)
    if parts:
        try:
            results = write_new(write_many or store.write_many, parts)
        except TRANSIENT as exc:
            if retries < settings.retry_max:
                for kind, _good in parts:
                    RETRIES.labels(kind).inc()
                # equal jitter: many workers hitting the same outage spread their retries
                delay = backoff_delay(retries, base=settings.retry_base_s, cap=settings.retry_cap_s)
                log.warning(
                    "%s: transient %r; retry %d/%d in %.1fs",
                    good_items[0][2],
                    exc,
                    retries + 1,
                    settings.retry_max,
                    delay,
                )
                return Outcome(retry_in=delay, exc=exc)
            for item in good_items:
                kept = to_dead(item, "retries_exhausted", exc)
                if kept is not None:
                    return kept
            return out
        except Exception as exc:  # noqa: BLE001 - not transient: retrying would not help
            log.exception("%s: cannot store batch", good_items[0][2])
            for item in good_items:
                kept = to_dead(item, "error", exc)
                if kept is not None:
                    return kept
            return out
        for (kind, good), written, n_dropped in zip(parts, results, dropped):
            RECORDS.labels(kind, "stored").inc(len(good))
            per_kind = out.written_by_kind.setdefault(kind, {})
            for key, n in written.items():
                per_kind[key] = per_kind.get(key, 0) + n
            count_dropped(kind, n_dropped, per_kind)
        if seen is not None:  # only now: a record is marked once it is stored
            seen.mark(stored_marks(marks, results))
    for item, bad in bad_parts:
        kind, batch = item[0], item[1]
        RECORDS.labels(kind, "bad").inc(len(bad))
        part = dict(batch, records=[r for r, _ in bad])
        reasons = "; ".join(sorted({why for _, why in bad}))
        kept = to_dead(item, "bad_records", BadBatch(reasons), doc_args=[part], suffix=":bad")
        if kept is not None:
            return kept
    return out


def summary(out: Outcome) -> str:
    """The task's return value: one short line (what Flower shows as the result).

    A string on purpose: Celery builds `saferepr()` of every return value whether or not anyone
    reads it, and for the nested count dicts that cost ~0.1 ms per task, as much as storing a
    small batch (py-spy on a solo worker)."""
    parts = [
        f"{kind} {w.get('records', 0)} rec {w.get('inserted', 0)} new "
        f"{w.get('duplicates', 0)} dup {w.get('state_applied', 0)} state"
        + (f" {w['parked']} parked" if w.get("parked") else "")
        + (f" {w['dropped']} dropped" if w.get("dropped") else "")
        for kind, w in out.written_by_kind.items()
    ]
    if out.dead_letters:
        parts.append("dead letters " + " ".join(out.dead_letters))
    return "; ".join(parts) or "nothing stored"


# ----- Celery tasks ----------------------------------------------------------------------------------


class IngestTask(Task):
    """Base for the ingest tasks: late ack, requeue when the worker is lost, no results."""

    acks_late = True  # ack after the writes, not before
    reject_on_worker_lost = True  # a killed child requeues the message instead of acking it
    ignore_result = True  # nothing reads results; no backend is configured
    max_retries = None  # retries are counted by handle_batch against settings.retry_max

    def _storage(self) -> tuple[Settings, Store, DeadLetters, Callable[..., list] | None]:
        s = settings_mod.current()
        try:
            # The database handle without the index check: that may wait on MongoDB, so it
            # runs only where history is written (clients.mongo_db, under the write timeout).
            db = clients.mongo_client()[s.mongodb_db]
            store = Store(db, clients.state_redis(), s)
            dead = DeadLetters(
                db,
                clients.state_redis(),
                timeout_s=s.history_write_timeout_s,
                spool_max_bytes=s.deadletter_spool_max_bytes,
            )
        except Exception as exc:  # noqa: BLE001 - no clients: keep the message, never ack it away
            log.error("%s: cannot open storage clients (%r); retrying", self.name, exc)
            raise self.retry(exc=exc, countdown=s.retry_cap_s, max_retries=None) from exc
        write = history_runtime.history_path(store.state).write_many
        if s.test_pause_after and s.test_pause_file:
            write = write_with_test_pause(write, s)
        return s, store, dead, write

    def _finish(self, out: Outcome) -> None:
        if out.retry_in is not None:
            # Publishes a copy with retries+1 and an ETA, then this message is acked. Countdowns
            # stay below the visibility timeout (settings.retry_cap_s < visibility_timeout_s).
            raise self.retry(exc=out.exc, countdown=out.retry_in, max_retries=None)

    def ingest(self, kind: str, batch: Any) -> str:
        s, store, dead, write = self._storage()
        out = handle_batch(
            kind,
            batch,
            store=store,
            dead=dead,
            settings=s,
            task_name=self.name,
            task_id=self.request.id,
            retries=self.request.retries,
            write_many=write,
            seen=Seen(store.state.client, s),
        )
        self._finish(out)
        return summary(out)

    def ingest_many(self, batches: Any) -> str:
        """A mixed task: envelopes of several kinds stored together. Each one's dead letters
        name its own per-kind task (a replay sends a plain per-kind task) with id <task id>:<i>."""
        s, store, dead, write = self._storage()
        if not isinstance(batches, list):
            batches = [batches]  # a replayed single envelope, or junk (dead-lettered)
        items: list[Item] = []
        for i, batch in enumerate(batches):
            kind = batch.get("kind") if isinstance(batch, dict) else None
            if isinstance(kind, str) and kind in INGEST_TASKS:
                items.append((kind, batch, INGEST_TASKS[kind], f"{self.request.id}:{i}"))
            else:
                items.append(("unknown", batch, self.name, f"{self.request.id}:{i}"))
        out = handle_batches(
            items,
            store=store,
            dead=dead,
            settings=s,
            retries=self.request.retries,
            write_many=write,
            seen=Seen(store.state.client, s),
        )
        self._finish(out)
        return summary(out)


def _make(kind: str) -> Task:
    s = settings_mod.current()

    def ingest(self: IngestTask, batch: Any, **_ignored: Any) -> str:
        return self.ingest(kind, batch)

    ingest.__name__ = kind
    ingest.__doc__ = f"Store a batch of {kind} records (core.contract envelope)."
    return app.task(
        ingest,
        bind=True,
        base=IngestTask,
        name=INGEST_TASKS[kind],
        soft_time_limit=s.task_soft_time_limit_s,
        time_limit=s.task_time_limit_s,
    )


trades = _make("trades")
tickers = _make("tickers")
candles = _make("candles")
books = _make("books")
orders = _make("orders")
balances = _make("balances")
positions = _make("positions")


@app.task(
    bind=True,
    base=IngestTask,
    name=INGEST_MIXED_TASK,
    soft_time_limit=settings_mod.current().task_soft_time_limit_s,
    time_limit=settings_mod.current().task_time_limit_s,
)
def mixed(self: IngestTask, batches: Any, **_ignored: Any) -> str:
    """Store several batch envelopes of different kinds (a quiet publish cycle of the feeder)."""
    return self.ingest_many(batches)
