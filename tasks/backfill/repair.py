"""Repair one gap: claim it, run its plan page by page through the writers, save the cursor after
every stored page, finish it. Plain code with injected ledger, source and store (unit-tested with
fakes); tasks.py only turns the result into Celery retries.

    claimed?      no  -> skipped (someone else holds it, or it is already done)
    coverage      another feeder of its shard published the window -> covered (no REST call);
                  partly -> the uncovered parts become new gaps; maybe soon -> released, retried
                  in a second (tasks/backfill/coverage.py)
    plan          malformed gap -> unrepairable (reason)
    each page     store (trades: validated) -> progress(cursor); lease lost -> stop ("lost")
    all steps     filled, or unrepairable with the plan's reason (books, tickers) or when OKX's
                  history ended before the gap's start
    error         OKX rejected the request itself (BadRequest: 51xxx parameters) ->
                  unrepairable at once;
                  anything else -> released (open again, cursor kept) and retried later,
                  unrepairable after BACKFILL_MAX_ATTEMPTS failures (a time
                  limit is no failure: the task continues from its cursor);
                  with fail=True (a manual backfill, or a gap that failed before) -> failed
                  (reason, cursor kept, `retry_at` after a backoff): the beat sweep retries it
    Ctrl-C        -> failed ("interrupted", not counted as a failure, retry_at now), re-raised

A manual backfill has no Celery retry behind it (the command line, or a task whose caller
waits for its outcome), so releasing its gap would leave it open with nobody working on it:
`failed` says what happened and hands the retry to the sweep.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from prometheus_client import Counter

from core.errors import BadRequest, PlanError
from core.logs import Redactor
from okx.backoff import backoff_delay
from okx.clock import now_ms
from tasks.backfill import coverage, snapshots
from tasks.backfill import plan as planning
from tasks.backfill.plan import TRADE_CHANNELS, Plan, Step
from tasks.derive.dirty import gap_closed
from tasks.writers.mongo_history import mark_trades_validated

log = logging.getLogger(__name__)

GAPS_DONE = Counter("okx_backfill_gaps_total", "Gaps finished by backfill", ["channel", "status"])
RECORDS = Counter("okx_backfill_records_total", "Records written by backfill", ["kind"])

STORE_KIND = {
    "trades": "trades",
    "candles": "candles",
    "orders": "orders",
    "pending": "orders",
    "fills": "fills",
}


# Backoff of a failed gap's retries by the sweep: BACKFILL_RETRY_S doubled per failure, capped.
FAILED_RETRY_CAP_MS = 30 * 60_000


@dataclass
class Result:
    gap_id: str
    status: str  # filled | unrepairable | covered | failed | released | skipped | lost
    reason: str = ""
    written: int = 0
    attempts: int = 0
    # what made the attempt fail (failed, released), for a command line's message; never stored
    error: BaseException | None = None
    retry_at_ms: int = 0  # failed: when the sweep may try again
    countdown: float | None = None  # released: retry this soon (None: BACKFILL_RETRY_S)

    @property
    def retry(self) -> bool:
        return self.status == "released"


class Repairer:
    def __init__(
        self,
        ledger: Any,
        source: Any,
        store: Any,
        *,
        state_redis: Any = None,
        inst_types: tuple[str, ...] = planning.INST_TYPES,
        orders_lookback_ms: int = 86_400_000,
        max_attempts: int = 8,
        retry_base_ms: int = 15_000,
        clock: Callable[[], int] = now_ms,
        on_page: Callable[[Step, Any, int], None] | None = None,
        coverage_wait_ms: int = 5_000,
        on_new_gap: Callable[[str], None] | None = None,
    ) -> None:
        self.ledger = ledger
        self.source = source
        self.store = store
        self.state_redis = state_redis
        self.inst_types = inst_types
        self.orders_lookback_ms = orders_lookback_ms
        self.max_attempts = max_attempts
        self.retry_base_ms = retry_base_ms
        self.clock = clock
        self.on_page = on_page
        self.coverage_wait_ms = coverage_wait_ms
        self.on_new_gap = on_new_gap  # a split-off part's repair (None: repaired right here)

    def run(self, gap_id: str, owner: str | None = None, *, fail: bool = False) -> Result:
        """Repair `gap_id`; `fail`: a failed attempt ends `failed` (see the module doc) instead
        of released. A gap that failed before (it has `retry_at`) fails again either way."""
        owner = owner or uuid.uuid4().hex
        ok, info = self.ledger.claim(gap_id, owner, self.clock())
        if not ok:
            return Result(gap_id, "skipped", info)
        attempts = int(info)
        gap = self.ledger.get(gap_id)
        fail = fail or "retry_at" in gap
        try:
            covered = self._coverage(gap, owner, attempts)
            if covered is not None:
                return covered
            return self._run(gap, owner, attempts, fail)
        except KeyboardInterrupt:
            # Ctrl-C: the cursor is saved; say so in the ledger instead of holding the lease
            now = self.clock()
            if fail:
                self.ledger.fail(
                    gap_id, owner, now, "interrupted (Ctrl-C)", retry_at_ms=now, failure=False
                )
            else:
                self.ledger.release(gap_id, owner, now, "interrupted", failure=False)
            raise

    def _coverage(self, gap: dict, owner: str, attempts: int) -> Result | None:
        """Close, narrow or hold back a gap that other feeders of its shard covered; None: go on
        to REST with the gap as it is."""
        gid = gap["id"]
        cov = coverage.read_for(self.ledger.r, gap, self.coverage_wait_ms)
        now = self.clock()
        verdict = coverage.decide(gap, cov, now, self.coverage_wait_ms)
        if verdict.action == "wait":
            self.ledger.release(gid, owner, now, "waiting for the shard's coverage", failure=False)
            return Result(gid, "released", "waiting for coverage", attempts=attempts, countdown=1.0)
        by = verdict.covered_by
        split: list[str] = []
        if verdict.action == "repair":
            # Nobody covered it; if another feeder's gap already holds the window (both were
            # down), that one is the shard's gap: one gap per window, one repair.
            same = self._registered(gap, int(gap["start_ms"]), int(gap["end_ms"]), gid, now)
            if not same:
                return None
            by = [f"gap {same}"]
            reason = f"the same window is already gap {same} (both feeders missed it)"
        elif verdict.action == "split":
            parts = coverage.pieces_as_gaps(gap, verdict.pieces)
            held = []
            for i, part in enumerate(parts):
                same = self._registered(gap, part.start_ms, part.end_ms, f"{gid}/{i}", now)
                if same:
                    held.append(same)
                else:
                    split.append(self.ledger.create(part, gap.get("feeder", ""), now))
            rest = f"gap {', '.join(split)}" if split else "nothing"
            also = f" (already gap {', '.join(held)}: not recorded twice)" if held else ""
            reason = f"partly covered by {', '.join(by)}: the rest is {rest}{also}"
        else:
            reason = f"covered by {', '.join(by)}"
        if not self.ledger.cover(gid, owner, now, by, reason, split):
            return Result(gid, "lost", "lease lost before closing as covered", attempts=attempts)
        GAPS_DONE.labels(gap.get("channel", ""), "covered").inc()
        if self.state_redis is not None and gap.get("channel") in TRADE_CHANNELS:
            gap_closed(self.state_redis, gap, "covered")  # the live trades' bars are rebuilt
        log.info(
            "gap %s covered: %s %s %s..%s (%s)",
            gid,
            gap.get("channel"),
            gap.get("instId"),
            gap.get("start_ms"),
            gap.get("end_ms"),
            reason,
        )
        for part_id in split:
            if self.on_new_gap is not None:
                self.on_new_gap(part_id)
            else:
                self.run(part_id)
        return Result(gid, "covered", reason, attempts=attempts)

    def _registered(self, gap: dict, start: int, end: int, ref: str, now: int) -> str:
        """The gap (or part, "<id>/<n>") that already holds this uncovered window, or "" once
        `ref` holds it. Parts split off were registered when split: never twice."""
        if gap.get("split_from") or not gap.get("shard"):
            return ""
        same = self.ledger.register_uncovered(
            gap["shard"], gap.get("channel", ""), gap.get("instId", ""), start, end, ref, now
        )
        mine = same == gap["id"] or same.startswith(f"{gap['id']}/")
        if mine or not same:
            return ""
        # Only another feeder's gap makes this one redundant (both were down). Two gaps of one
        # feeder over nested windows (a seqId break inside a reconnect's window) are repaired
        # each, as with a single feeder: "covered" says another feeder has the data.
        held = self.ledger.get(same.split("/", 1)[0]) or {}
        return "" if held.get("feeder", "") == gap.get("feeder", "") else same

    def _run(self, gap: dict, owner: str, attempts: int, fail: bool) -> Result:
        gap_id = gap["id"]
        try:
            plan = planning.plan_gap(
                gap, inst_types=self.inst_types, orders_lookback_ms=self.orders_lookback_ms
            )
        except PlanError as exc:
            return self._finish(gap, owner, "unrepairable", str(exc), 0, attempts)
        written = 0
        try:
            outcome = self._execute(gap, owner, plan)
            if outcome is None:
                return Result(gap_id, "lost", "lease lost to another worker", attempts=attempts)
            written, ended = outcome
        except SoftTimeLimitExceeded:
            # Not a failure: the task ran out of time with its cursor saved; continue later.
            self.ledger.release(
                gap_id, owner, self.clock(), "time limit: continuing", failure=False
            )
            return Result(gap_id, "released", "time limit", attempts=attempts)
        except BadRequest as exc:
            # OKX refused the request itself (parameters, unknown instrument): retrying cannot
            # help. AuthFailed is no BadRequest: a fixed configuration can still fill the gap.
            return self._finish(
                gap, owner, "unrepairable", f"OKX rejected: {exc}", written, attempts
            )
        except Exception as exc:  # noqa: BLE001 - every failure ends in a ledger state
            # stored and shown (`gaps`, Flower): a URL in a library's message loses its password
            reason = Redactor()(f"{type(exc).__name__}: {exc}")
            failures = int(gap.get("failures") or 0) + 1
            if failures >= self.max_attempts:
                return self._finish(
                    gap,
                    owner,
                    "unrepairable",
                    f"gave up after {failures} failed attempts: {reason}",
                    written,
                    attempts,
                )
            if fail:
                return self._fail(gap, owner, reason, exc, failures, attempts)
            log.warning(
                "gap %s (%s %s): attempt %d failed, released for a retry: %s",
                gap_id,
                gap.get("channel"),
                gap.get("instId"),
                failures,
                reason,
            )
            self.ledger.release(gap_id, owner, self.clock(), reason)
            return Result(gap_id, "released", reason, attempts=attempts, error=exc)
        if plan.unrepairable:
            return self._finish(gap, owner, "unrepairable", plan.unrepairable, written, attempts)
        if ended:
            return self._finish(gap, owner, "unrepairable", ended, written, attempts)
        return self._finish(gap, owner, "filled", plan.note, written, attempts)

    def _fail(
        self, gap: dict, owner: str, reason: str, exc: BaseException, failures: int, attempts: int
    ) -> Result:
        gid = gap["id"]
        now = self.clock()
        delay = backoff_delay(failures - 1, base=self.retry_base_ms, cap=FAILED_RETRY_CAP_MS)
        retry_at = now + int(delay)
        if not self.ledger.fail(gid, owner, now, reason, retry_at_ms=retry_at):
            return Result(gid, "lost", "lease lost before failing", attempts=attempts, error=exc)
        GAPS_DONE.labels(gap.get("channel", ""), "failed").inc()
        log.warning(
            "gap %s (%s %s): attempt failed (%d of %d), the sweep retries it in %.0f s: %s",
            gid,
            gap.get("channel"),
            gap.get("instId"),
            failures,
            self.max_attempts,
            delay / 1000,
            reason,
        )
        return Result(gid, "failed", reason, attempts=attempts, error=exc, retry_at_ms=retry_at)

    def _finish(
        self, gap: dict, owner: str, status: str, reason: str, written: int, attempts: int
    ) -> Result:
        gid = gap.get("id", "")
        if not self.ledger.finish(gid, owner, self.clock(), status, reason):
            return Result(gid, "lost", "lease lost before finishing", written, attempts)
        GAPS_DONE.labels(gap.get("channel", ""), status).inc()
        if self.state_redis is not None and gap.get("channel") in TRADE_CHANNELS:
            gap_closed(self.state_redis, gap, status)  # its bars are rebuilt (tasks/derive)
        log_fn = log.info if status == "filled" and not reason else log.warning
        log_fn(
            "gap %s %s: %s %s %s..%s, %d records%s",
            gid,
            status,
            gap.get("channel"),
            gap.get("instId"),
            gap.get("start_ms"),
            gap.get("end_ms"),
            written,
            f" ({reason})" if reason else "",
        )
        return Result(gid, status, reason, written, attempts)

    def _execute(self, gap: dict, owner: str, plan: Plan) -> tuple[int, str] | None:
        """Run the plan from the saved cursor; (records written, history-ended reason) or None
        when the lease was lost."""
        gid = gap["id"]
        first, cursor = planning.decode_progress(gap.get("cursor"), len(plan.steps))
        written, ended = 0, ""
        for index in range(first, len(plan.steps)):
            step = plan.steps[index]
            resume = cursor if index == first else None
            if step.kind in STORE_KIND:
                for page in self.source.pages(step, resume):
                    n = self._store_page(step, page.records)
                    written += n
                    if page.history_ended and not ended:
                        ended = (
                            f"OKX history ends before the gap's start "
                            f"({step.kind} {step.key}): older records cannot be fetched"
                        )
                    nxt = (
                        planning.encode_progress(index, page.cursor)
                        if page.cursor
                        else planning.encode_progress(index + 1, None)
                    )
                    if not self.ledger.progress(gid, owner, self.clock(), nxt, n):
                        return None
                    if self.on_page is not None:
                        self.on_page(step, page, n)
            else:
                n = self._snapshot(step)
                written += n
                if not self.ledger.progress(
                    gid, owner, self.clock(), planning.encode_progress(index + 1, None), n
                ):
                    return None
        return written, ended

    def _store_page(self, step: Step, records: list[dict]) -> int:
        if not records:
            return 0
        kind = STORE_KIND[step.kind]
        validated = kind == "trades"
        written = self.store.write(kind, records, source="rest", validated=validated)
        if validated and written.get("duplicates"):
            # REST confirmed them: trades the live feed stored first become validated too
            # (new ones were inserted validated; skipping the update when there are none
            # saves a write per page in the common case, a gap of trades nobody stored)
            mark_trades_validated(self.store.db, step.key, [r["tradeId"] for r in records])
        RECORDS.labels(kind).inc(len(records))
        return len(records)

    def _snapshot(self, step: Step) -> int:
        if step.kind == "account":
            counts = snapshots.snapshot_account(
                self.source, self.store, self.state_redis, self.clock()
            )
            return counts["balances"] + counts["positions"] + counts["zeroed"]
        if step.kind == "book":
            return snapshots.reseed_book(self.source, self.store, step.key)
        if step.kind == "ticker":
            return snapshots.reseed_ticker(self.source, self.store, step.key)
        raise ValueError(f"unknown step {step.kind!r}")
