"""Celery tasks of the `backfill` queue. Thin: build the pieces (context.py), call the plain code
(repair.py, sweep.py, audit.py, snapshots.py), turn a released gap into a countdown retry.

    tasks.backfill.repair_gap(gap_id)                    the feeder and the sweep send these
    tasks.backfill.backfill(channel, instId, start, end, bar=None)
                                                         on demand: a `manual` gap, then its repair
    backfill(...)                                        short alias for `celery call backfill`
    tasks.backfill.sweep()                               beat, every BACKFILL_SWEEP_S
    tasks.backfill.audit(instId=None)                    beat, every AUDIT_EVERY_S
    tasks.backfill.sync_fills()                          beat, every BACKFILL_FILLS_EVERY_S
    tasks.backfill.snapshot_account()                    sweep (dead feeder) or on demand

No secret ever travels in a task's arguments: credentials come from the worker's settings
(core/settings.py, read from its environment).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from celery import Task

from core import settings as settings_mod
from core.contract import (
    AUDIT_TASK,
    BACKFILL_ALIAS_TASK,
    BACKFILL_QUEUE,
    BACKFILL_TASK,
    FILLS_TASK,
    REPAIR_GAP_TASK,
    SNAPSHOT_TASK,
    SWEEP_TASK,
)
from core.gaps import Gap
from okx.channels import BOOK_CHANNELS
from okx.clock import now_ms
from tasks.app import app
from tasks.backfill import audit as audit_mod
from tasks.backfill import context, snapshots
from tasks.backfill import plan as planning
from tasks.backfill.repair import Repairer, Result
from tasks.backfill.sweep import sweep as run_sweep

log = logging.getLogger(__name__)


class BackfillTask(Task):
    acks_late = True  # a killed worker's message comes back; the lease expires too
    reject_on_worker_lost = True
    ignore_result = True
    max_retries = None  # attempts are counted in the gap (BACKFILL_MAX_ATTEMPTS)


def make_repairer(on_page: Any = None) -> Repairer:
    s = settings_mod.current()
    st = context.store()
    return Repairer(
        context.ledger(),
        context.source(),
        st,
        state_redis=st.state.client,
        inst_types=s.backfill_inst_types,
        orders_lookback_ms=s.orders_lookback_s * 1000,
        max_attempts=s.backfill_max_attempts,
        retry_base_ms=int(s.backfill_retry_s * 1000),
        on_page=on_page,
        coverage_wait_ms=int(s.backfill_coverage_wait_s * 1000),
        on_new_gap=lambda gid: app.send_task(REPAIR_GAP_TASK, args=[gid], queue=BACKFILL_QUEUE),
    )


def _summary(res: Result) -> dict[str, Any]:
    return {"gap": res.gap_id, "status": res.status, "reason": res.reason, "written": res.written}


@app.task(bind=True, base=BackfillTask, name=REPAIR_GAP_TASK)
def repair_gap(self: BackfillTask, gap_id: Any, **_ignored: Any) -> dict[str, Any]:
    """Repair the gap `gap_id` from REST (see repair.py for the outcomes)."""
    gap_id = str(gap_id)
    res = make_repairer().run(gap_id, owner=f"{self.request.id or 'local'}:{uuid.uuid4().hex[:8]}")
    if res.retry:
        countdown = res.countdown
        if countdown is None:
            countdown = settings_mod.current().backfill_retry_s
        raise self.retry(countdown=countdown, max_retries=None)
    return _summary(res)


def create_manual_gap(
    channel: Any, inst_id: Any, start: Any, end: Any, bar: Any = None, *, now: int | None = None
) -> str:
    """Validate an on-demand request and record it in the ledger as an open `manual` gap."""
    ch = planning.normalize_channel(channel, bar)
    now = now if now is not None else now_ms()
    # A snapshot (balances, positions, a book, a ticker) is taken now: no range is needed. A range
    # without an end runs up to now.
    snapshot = ch in planning.ACCOUNT_CHANNELS or ch in BOOK_CHANNELS or ch == "tickers"
    if start is None and not snapshot:
        raise planning.PlanError(f"start is required for {ch}")
    start_ms = now if start is None else planning.parse_time(start, "start")
    end_ms = now if end is None else planning.parse_time(end, "end")
    if end_ms < start_ms:
        raise planning.PlanError(f"end ({end}) is before start ({start})")
    inst = "" if ch in planning.ACCOUNT_CHANNELS else str(inst_id or "")
    if ch == "orders":
        inst = inst or "ANY"
    if not inst and ch not in planning.ACCOUNT_CHANNELS:
        raise planning.PlanError(f"instId is required for {ch}")
    gap = Gap(
        ch, inst, start_ms, end_ms, "manual", reason=f"manual: backfill {ch} {inst} requested"
    )
    return context.ledger().create(gap, "backfill-manual", now)


@app.task(bind=True, base=BackfillTask, name=BACKFILL_TASK)
def backfill(
    self: BackfillTask,
    channel: Any = None,
    instId: Any = None,
    start: Any = None,
    end: Any = None,
    bar: Any = None,
    **_ignored: Any,
) -> dict[str, Any]:
    """On demand: record a `manual` gap (visible in the ledger) and fill it. A failed attempt
    leaves the gap `failed` with its reason, for the sweep to retry (repair.py)."""
    # The repairer (its MongoDB client) first: a store that cannot even be built leaves no gap.
    repairer = make_repairer()
    try:
        gap_id = create_manual_gap(channel, instId, start, end, bar)
    except planning.PlanError as exc:
        log.error("backfill request refused: %s", exc)  # counted by Celery as a failure
        return {"gap": None, "status": "refused", "reason": str(exc), "written": 0}
    res = repairer.run(gap_id, fail=True)
    if res.retry:  # continue in a repair task; this request's gap stays the same
        app.send_task(
            REPAIR_GAP_TASK,
            args=[gap_id],
            queue=BACKFILL_QUEUE,
            countdown=settings_mod.current().backfill_retry_s,
        )
    return _summary(res)


@app.task(bind=True, base=BackfillTask, name=BACKFILL_ALIAS_TASK)
def backfill_alias(self: BackfillTask, **kwargs: Any) -> dict[str, Any]:
    """`celery -A tasks call backfill --kwargs '{...}'`: an unrouted name lands on the default
    queue, so this only forwards the request to the backfill queue (long work stays off ingest)."""
    app.send_task(BACKFILL_TASK, kwargs=kwargs, queue=BACKFILL_QUEUE)
    return {"forwarded": BACKFILL_TASK}


@app.task(bind=True, base=BackfillTask, name=SWEEP_TASK)
def sweep(self: BackfillTask, **_ignored: Any) -> dict[str, Any]:
    s = settings_mod.current()
    return run_sweep(
        context.ledger(),
        now_ms=now_ms(),
        settings=s,
        send_repair=lambda gid: app.send_task(REPAIR_GAP_TASK, args=[gid], queue=BACKFILL_QUEUE),
        send_snapshot=lambda: app.send_task(SNAPSHOT_TASK, queue=BACKFILL_QUEUE),
    )


@app.task(bind=True, base=BackfillTask, name=SNAPSHOT_TASK)
def snapshot_account(self: BackfillTask, **_ignored: Any) -> dict[str, Any]:
    s = settings_mod.current()
    if s.credentials is None:
        log.info("account snapshot skipped: no OKX credentials")
        return {"skipped": "no credentials"}
    st = context.store()
    try:
        return snapshots.snapshot_account(context.source(), st, st.state.client, now_ms())
    except Exception as exc:  # noqa: BLE001 - REST or storage trouble: try again soon
        log.warning("account snapshot failed (%r); retrying", exc)
        raise self.retry(countdown=s.backfill_retry_s, max_retries=5) from exc


@app.task(bind=True, base=BackfillTask, name=AUDIT_TASK)
def audit(self: BackfillTask, instId: Any = None, **_ignored: Any) -> dict[str, Any]:
    s = settings_mod.current()
    st, r = context.store(), context.ledger_redis()
    insts = [str(instId)] if instId else audit_mod.audit_instruments(r, s.audit_instruments)
    out, errors = {}, {}
    for inst in insts:
        try:
            out[inst] = audit_mod.audit_instrument(
                inst,
                source=context.source(),
                store=st,
                r=r,
                now_ms=now_ms(),
                window_ms=s.audit_window_s * 1000,
                lag_ms=s.audit_lag_s * 1000,
            )
        except Exception as exc:  # noqa: BLE001 - one instrument's trouble must not stop the rest
            log.warning("audit %s failed: %r (next run retries the window)", inst, exc)
            errors[inst] = f"{type(exc).__name__}: {exc}"
    return {"audited": out, "errors": errors}


@app.task(bind=True, base=BackfillTask, name=FILLS_TASK)
def sync_fills(self: BackfillTask, **_ignored: Any) -> dict[str, Any]:
    s = settings_mod.current()
    if s.credentials is None:
        return {"skipped": "no credentials"}
    try:
        n = audit_mod.sync_fills(
            source=context.source(),
            store=context.store(),
            r=context.ledger_redis(),
            inst_types=s.backfill_inst_types,
            now_ms=now_ms(),
            first_window_ms=s.fills_first_window_s * 1000,
        )
    except Exception as exc:  # noqa: BLE001 - the next beat run continues from the cursor
        log.warning("fills sync failed: %r", exc)
        return {"error": f"{type(exc).__name__}: {exc}"}
    return {"fills": n}
