"""The drain: parked history into MongoDB, and the breaker's probe. Plain function, fed its parts.

One drain runs at a time (the breaker's drain lease, `claim`). It pings MongoDB under
HISTORY_WRITE_TIMEOUT_S: a failure opens the breaker again and ends the run; a slow answer
(over HISTORY_SLOW_MS) keeps it open from now, but the drain still writes (a slow MongoDB takes
large inserts far better than one small insert per batch). Chunks of HISTORY_DRAIN_CHUNK_BYTES
are written, in slices of SLICE documents each under its own timeout, until the backlog is
empty or HISTORY_DRAIN_BUDGET_S is spent, so a drain never holds a worker process for long.
The breaker closes only when the ping was fast *and* the backlog is empty: MongoDB caught up. A
store slower than the feed never closes it, so ingest never waits on it; the drain writes at
the store's own pace meanwhile.

While work is left (breaker not closed, or history still parked), the drain keeps its lease
and sends its own follow-up carrying the same token (`follow_up(token, countdown)`: after
HISTORY_BREAKER_OPEN_S when MongoDB failed or was slow, at once when only the budget ran out).
So exactly one drain chain probes and drains until the backlog is gone, with or without live
batches or beat; a follow-up that is lost only costs the lease time, after which the next
check hands the probe out again. Done, it gives the lease back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pymongo

from core.settings import WorkerSettings as Settings
from tasks.history.breaker import CLOSED, HALF_OPEN, OPEN, Breaker
from tasks.history.path import mongo_down
from tasks.history.pending import Pending, merge
from tasks.writers import write_history

log = logging.getLogger(__name__)


@dataclass
class DrainResult:
    state: str = ""  # the breaker after this run
    claimed: bool = True
    chunks: int = 0
    records: int = 0
    inserted: int = 0
    duplicates: int = 0
    pending_bytes: int = 0
    error: str = ""
    reason: str = ""  # why the breaker stays open (slow)
    follow_up_s: float | None = None  # a follow-up drain was sent, running after this long

    def summary(self) -> str:
        """The task's result: one line Flower shows (breaker state and backlog at a glance)."""
        if not self.claimed:
            return f"another drain holds the lease; pending {self.pending_bytes} B"
        text = (
            f"breaker {self.state}; drained {self.chunks} chunks, {self.records} records "
            f"({self.inserted} new, {self.duplicates} dup); pending {self.pending_bytes} B"
        )
        text += f"; {self.error}" if self.error else ""
        return text + (
            f"; next drain in {self.follow_up_s:g} s" if self.follow_up_s is not None else ""
        )


SLICE = 1000  # documents per insert: each slice has its own timeout, so a slow store progresses


def drain(
    *,
    breaker: Breaker,
    pending: Pending,
    db: Callable[[], Any],
    settings: Settings,
    token: str,
    on_closed: Callable[[], Any] = lambda: None,
    follow_up: Callable[[str, float], Any] | None = None,
    on_stored: Callable[[list], Any] = lambda parts: None,
    monotonic: Callable[[], float] = time.monotonic,
) -> DrainResult:
    s = settings
    out = DrainResult()
    if not breaker.claim(token):
        out.claimed, out.pending_bytes = False, pending.size()
        return out
    deadline = monotonic() + s.history_drain_budget_s
    try:
        probe = _probe(breaker, db, s, out)
        while probe != "failed" and not out.error and monotonic() < deadline:
            chunk = pending.take(s.history_drain_chunk_bytes)
            if not chunk:
                break
            parts = merge(chunk)
            try:
                took = _write_chunk(db, parts, s, out)
            except Exception as exc:
                if not mongo_down(exc):
                    raise
                out.error = f"write failed: {type(exc).__name__}"
                log.warning("history: drain write failed (%r); the chunk is kept", exc)
                breaker.failure(f"drain: {type(exc).__name__}: {exc}"[:200])
                break  # the chunk stays in history:draining; the next drain writes it first
            pending.done(chunk)
            on_stored(parts)  # e.g. the candle/VWAP rebuild marks of the trades now stored
            out.chunks += 1
            out.records += sum(len(r) for _k, r in parts)
            log.info("history: drained %d records in %.0f ms", out.records, took)
            breaker.claim(token, probing=False)  # renew the lease
        out.pending_bytes = pending.size()
        out.state = _verdict(breaker, probe, out, on_closed)
        if follow_up is not None and (out.state != CLOSED or out.pending_bytes > 0):
            # MongoDB failed or is slow: probe again later; only the budget ran out: go on
            wait = s.history_breaker_open_s if out.error or probe != "fast" else 0.0
            breaker.claim(token, extra_s=wait, probing=False)  # the follow-up's, until it runs
            follow_up(token, wait)
            out.follow_up_s = wait
            return out
    except BaseException:
        breaker.release(token)
        raise
    breaker.release(token)
    return out


def _write_chunk(db: Callable[[], Any], parts: list, s: Settings, out: DrainResult) -> float:
    """Write a merged chunk in slices of SLICE documents; its duration in ms."""
    started = time.perf_counter()
    handle = None
    for kind, records in parts:
        for i in range(0, len(records), SLICE):
            with pymongo.timeout(s.history_write_timeout_s * 4):
                if handle is None:  # (pymongo's Database has no truth value)
                    handle = db()
                w = write_history(
                    handle, kind, records[i : i + SLICE], books_sample_ms=s.books_sample_ms
                )
            out.inserted += w.inserted
            out.duplicates += w.duplicates
    return (time.perf_counter() - started) * 1000


def _verdict(breaker: Breaker, probe: str, out: DrainResult, on_closed: Callable[[], Any]) -> str:
    """Closed only when MongoDB answered fast *and* the backlog is gone (it caught up: a store
    slower than the feed keeps the breaker open, so ingest never waits on it)."""
    if probe == "failed" or out.error:
        return OPEN
    if probe == "slow":
        breaker.reopen(out.reason or "slow")
        return OPEN
    if out.pending_bytes > 0:
        return HALF_OPEN  # still probing: the chain goes on at once
    was = breaker.close()
    if was != CLOSED:
        log.warning("history breaker CLOSED (was %s): MongoDB caught up", was)
        on_closed()
    return CLOSED


def _probe(breaker: Breaker, db: Callable[[], Any], s: Settings, out: DrainResult) -> str:
    """ping under the write timeout: "failed" (breaker opened again), "slow" or "fast"."""
    started = time.perf_counter()
    try:
        with pymongo.timeout(s.history_write_timeout_s):
            db().command("ping")
    except Exception as exc:
        if not mongo_down(exc):
            raise
        out.error = f"probe failed: {type(exc).__name__}"
        breaker.failure(f"probe: {type(exc).__name__}: {exc}"[:200])
        return "failed"
    took = (time.perf_counter() - started) * 1000
    if took > s.history_slow_ms:
        out.reason = f"slow: probe {took:.0f} ms"
        log.warning("history: MongoDB answers slowly (%.0f ms): breaker stays open", took)
        return "slow"
    return "fast"
