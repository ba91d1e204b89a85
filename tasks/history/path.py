"""One batch on two independent paths: Redis state first, then MongoDB history or the parking lot.

    state    written first, every batch. A state Redis that fails (down, hung, loading) is
             counted and logged, and this process skips state writes for STATE_SKIP_S, so a
             dead state Redis costs history nothing; the next batch after that writes state
             again (versioned: it is current as soon as Redis answers). Account kinds (orders,
             balances, positions) change rarely and their state is not superseded within
             seconds: their batch is retried (history already written or parked) until the
             state write succeeds.
    history  the breaker (breaker.py) decides: closed -> written inline under
             HISTORY_WRITE_TIMEOUT_S (pymongo.timeout bounds server selection and sockets); a
             write that fails, or HISTORY_SLOW_WRITES in a row that take longer than
             HISTORY_SLOW_MS, open the breaker;
             a failed write, and every batch while the breaker is open, is parked
             (pending.py) and the batch acknowledged. Parked history reaches MongoDB through
             the drain task (drain.py) on the `history` queue.

`write_many` answers like `Store.write_many` (one count dict per part, plus `parked`), so
tasks/ingest.py decides bad input and non-transient errors exactly as before.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import pymongo
import pymongo.errors
import redis.exceptions
from prometheus_client import Counter

from core.settings import WorkerSettings as Settings
from tasks.derive.dirty import mark_stored
from tasks.documents import natural_id
from tasks.history import overflow
from tasks.history.breaker import Breaker, Reading
from tasks.history.pending import Parts, Pending
from tasks.writers import HISTORY_ONLY_KINDS, write_history

log = logging.getLogger(__name__)

# The state kinds whose batch must not be acknowledged without its state (see the docstring).
ACCOUNT_KINDS = ("orders", "balances", "positions")

REDIS_DOWN: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    OSError,
)

PARKED = Counter(
    "okx_history_parked_records_total", "Records parked while the breaker was open", ["kind"]
)
STATE_SKIPPED = Counter(
    "okx_state_skipped_records_total", "Records whose Redis state write failed or was skipped",
    ["kind"],
)  # fmt: skip
SLOW = Counter("okx_history_slow_writes_total", "Inline MongoDB writes over HISTORY_SLOW_MS")


def mongo_down(exc: BaseException) -> bool:
    """MongoDB unreachable, hung or too slow, as pymongo reports it (not a refused document)."""
    if isinstance(
        exc,
        (pymongo.errors.ConnectionFailure, pymongo.errors.ExecutionTimeout, OSError),
    ):
        return True
    return isinstance(exc, pymongo.errors.PyMongoError) and bool(getattr(exc, "timeout", False))


class _Skip:
    """Per process: until when state writes are skipped (monotonic seconds)."""

    until = 0.0


# Per process: the books windows already parked (an insertion-ordered dict as a bounded set).
_PARKED_WINDOWS: dict[str, None] = {}


class HistoryPath:
    def __init__(
        self,
        *,
        state: Any,  # tasks.writers.RedisState
        db: Callable[[], Any],  # the history database (called only when history is written)
        breaker: Breaker | None,
        pending: Pending | None,
        settings: Settings,
        send_drain: Callable[..., Any] = lambda token, countdown=0.0: None,
        ledger: Any = None,  # the broker Redis, for overflow gaps
        monotonic: Callable[[], float] = time.monotonic,
        skip: type[_Skip] | _Skip = _Skip,
    ):
        self.state = state
        self.db = db
        self.breaker = breaker
        self.pending = pending
        self.s = settings
        self.send_drain = send_drain
        self.ledger = ledger
        self.monotonic = monotonic
        self.skip = skip
        self._parked_windows = _PARKED_WINDOWS

    def write_many(
        self, parts: list[tuple[str, list[dict]]], *, validated: bool = False
    ) -> list[dict[str, int]]:
        states, state_exc = self._state(parts)
        hists = self._history(parts, validated)
        self._mark_derive([p for p, h in zip(parts, hists) if not h.get("parked")])
        if state_exc is not None and any(k in ACCOUNT_KINDS and r for k, r in parts):
            raise state_exc  # transient: the task retries; history is already safe
        return [
            {
                "records": len(records),
                "inserted": hist.get("inserted", 0),
                "duplicates": hist.get("duplicates", 0),
                "parked": hist.get("parked", 0),
                "state_applied": st.get("applied", 0),
                "state_stale": st.get("stale", 0),
                # the records' state is not in Redis: the duplicate check must not mark them
                "state_failed": int(state_exc is not None),
            }
            for (_kind, records), hist, st in zip(parts, hists, states)
        ]

    # ----- state -----------------------------------------------------------------------------
    def _state(self, parts: Parts) -> tuple[list[dict[str, int]], BaseException | None]:
        empty = [{"applied": 0, "stale": 0} for _ in parts]
        if self.monotonic() < self.skip.until:
            for kind, records in parts:
                STATE_SKIPPED.labels(kind).inc(len(records))
            return empty, redis.exceptions.ConnectionError("state writes paused (Redis failed)")
        try:
            return self.state.write_many(
                [(kind, recs if kind not in HISTORY_ONLY_KINDS else []) for kind, recs in parts]
            ), None
        except REDIS_DOWN as exc:
            self.skip.until = self.monotonic() + self.s.state_skip_s
            for kind, records in parts:
                STATE_SKIPPED.labels(kind).inc(len(records))
            log.warning(
                "state Redis failed (%r); skipping state for %.1fs", exc, self.s.state_skip_s
            )
            return empty, exc

    def _mark_derive(self, stored: Parts) -> None:
        """Candles and VWAP of the minutes whose trades MongoDB now holds are rebuilt
        (tasks/derive); parked trades are marked by the drain that stores them."""
        if not any(kind == "trades" and records for kind, records in stored):
            return
        if self.monotonic() < self.skip.until:
            return  # the state Redis just failed: no wait on it (those bars rebuild at the audit)
        try:
            mark_stored(self.state.client, stored)
        except REDIS_DOWN as exc:  # the state Redis is away: its rebuild marks go with it
            log.warning("cannot mark trades for the candle/VWAP rebuild (%r)", exc)

    # ----- history ---------------------------------------------------------------------------
    def _reading(self) -> Reading | None:
        if self.breaker is None:
            return None
        try:
            reading = self.breaker.check()
        except REDIS_DOWN as exc:  # no breaker to read: write inline (the old way, bounded)
            log.warning("history breaker unreadable (%r); writing history inline", exc)
            return None
        if reading.kick:
            try:
                self.send_drain(reading.kick)
            except Exception as exc:  # noqa: BLE001 - the lease runs out; someone sends again
                log.warning("cannot send the history drain task: %r", exc)
        return reading

    def _history(self, parts: Parts, validated: bool) -> list[dict[str, int]]:
        reading = self._reading()
        if reading is not None and not reading.writes_inline:
            return self._park(parts, None)
        started = time.perf_counter()
        try:
            with pymongo.timeout(self.s.history_write_timeout_s):
                db = self.db()  # (a process's first call also creates the indexes: not timed)
                started = time.perf_counter()
                out = []
                for kind, records in parts:
                    w = write_history(
                        db, kind, records, validated=validated,
                        books_sample_ms=self.s.books_sample_ms,
                    )  # fmt: skip
                    out.append({"inserted": w.inserted, "duplicates": w.duplicates})
        except Exception as exc:
            if not mongo_down(exc) or self.breaker is None or self.pending is None:
                raise
            log.warning("history write failed (%r): parking the batch", exc)
            self._failure(f"{type(exc).__name__}: {exc}"[:200])
            return self._park(parts, exc)
        elapsed_ms = (time.perf_counter() - started) * 1000
        if self.breaker is not None:
            if elapsed_ms > self.s.history_slow_ms:
                SLOW.inc()
                log.warning("history write took %.0f ms (> HISTORY_SLOW_MS)", elapsed_ms)
                self._failure(f"slow: {elapsed_ms:.0f} ms", slow=True)
            else:
                try:
                    self.breaker.success()
                except REDIS_DOWN:
                    pass  # failures are forgotten at the next success
        return out

    def _failure(self, reason: str, *, slow: bool = False) -> None:
        assert self.breaker is not None
        try:
            if self.breaker.failure(reason, slow=slow):
                log.error("history breaker OPEN: %s", reason)
                # Start the drain chain now, its probe due when the breaker may half-open:
                # history gets back to MongoDB even if no further batch ever arrives.
                token = uuid.uuid4().hex
                wait = self.s.history_breaker_open_s
                if self.breaker.claim(token, extra_s=wait, probing=False):
                    self.send_drain(token, wait)
        except REDIS_DOWN as exc:
            log.warning("cannot record the history failure in the breaker: %r", exc)
        except Exception as exc:  # noqa: BLE001 - the lease runs out; a check sends again
            log.warning("cannot send the history drain task: %r", exc)

    def _sampled(self, records: list[dict]) -> list[dict]:
        """Books pushes MongoDB would not keep anyway: with BOOKS_SAMPLE_MS one book per
        instrument, channel and window is stored (its `_id` is the window, insert-only), so a
        push whose window this process already parked is not parked again. That keeps the
        backlog's largest kind to a few KB a second; full snapshots are always kept."""
        if self.s.books_sample_ms <= 0:
            return records
        out = []
        for rec in records:
            if rec.get("full"):
                out.append(rec)
                continue
            try:
                key = natural_id("books", rec, books_sample_ms=self.s.books_sample_ms)
            except (KeyError, TypeError, ValueError):
                out.append(rec)  # the writer decides about it, as inline
                continue
            if key not in self._parked_windows:
                self._parked_windows[key] = None
                out.append(rec)
        while len(self._parked_windows) > 10_000:  # bounded: oldest windows first
            self._parked_windows.pop(next(iter(self._parked_windows)))
        return out

    def _park(self, parts: Parts, cause: BaseException | None) -> list[dict[str, int]]:
        """Park the batch's records; raise (transient) if even that is impossible."""
        if self.pending is None:
            raise cause or redis.exceptions.ConnectionError("no parking for history")
        kept = [
            (kind, self._sampled(records) if kind == "books" else records)
            for kind, records in parts
            if records
        ]
        kept = [(kind, records) for kind, records in kept if records]
        if kept:
            evicted = self.pending.park(kept)
            if evicted:
                overflow.record(
                    self.ledger or self.pending.client, evicted, now_ms=int(time.time() * 1000)
                )
        for kind, records in kept:
            PARKED.labels(kind).inc(len(records))
        return [{"parked": len(records)} for _kind, records in parts]  # (sampled books: held)
