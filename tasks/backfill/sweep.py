"""The beat sweep (every BACKFILL_SWEEP_S): what the feeder could not report itself.

0. Open and failed gaps that other feeders of their shard covered meanwhile are closed as
   `covered` (tasks/backfill/coverage.py), before anything is sent for them.
1. Open gaps nobody touched for BACKFILL_REQUEUE_AFTER_S (their repair task was lost) and
   filling gaps whose lease expired (their worker died) are sent again; so are failed gaps whose
   `retry_at` has come (the backoff their last failure set, repair.py), at most once per
   BACKFILL_REQUEUE_AFTER_S each. BACKFILL_MAX_ATTEMPTS failures end a gap unrepairable.
2. Public streams whose watermark is older than BACKFILL_STALE_S (the feeder is dead, stuck, or
   lost a subscription without noticing) get a `stale` gap from their last record to now.
3. A feeder whose heartbeat is older than FEEDER_DEAD_S (or gone), or no live feeder at all while
   account watermarks exist: balances and positions are snapshotted over REST.

The decisions are pure functions in plan.py; this module only reads and writes Redis and sends
tasks (through the callables it is given).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from core import keys
from core.settings import WorkerSettings as Settings
from okx.channels import PRIVATE_CHANNELS
from tasks.backfill import coverage
from tasks.backfill import plan as planning
from tasks.backfill.ledger import GapLedger

log = logging.getLogger(__name__)


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def failed_gaps_due(gaps: list[dict], now_ms: int, requeue_after_ms: int) -> list[str]:
    """Failed gaps whose backoff is over, not sent again within `requeue_after_ms` (that
    repair may still be queued behind other work). Pure."""
    out = []
    for g in gaps:
        if g.get("status") != "failed":
            continue
        retry_at, sent = _int(g.get("retry_at")), _int(g.get("enqueued_ms"))
        if retry_at <= now_ms and (sent < retry_at or now_ms - sent >= requeue_after_ms):
            out.append(g["id"])
    return out


def _int(v: Any) -> int:
    try:
        return int(v or 0)
    except (TypeError, ValueError):
        return 0  # a hand-edited hash: due now rather than never


def read_watermarks(r: Any) -> dict[tuple[str, str], dict]:
    names = [_s(n) for n in r.scan_iter(match=keys.WATERMARK_PATTERN, count=1000)]
    pipe = r.pipeline(transaction=False)
    for n in names:
        pipe.hgetall(n)
    out = {}
    for name, h in zip(names, pipe.execute()):
        out[keys.parse_watermark_key(name)] = {_s(k): _s(v) for k, v in h.items()}
    return out


def read_feeders(r: Any) -> dict[str, dict | None]:
    ids = sorted(_s(i) for i in r.smembers(keys.FEEDERS))
    pipe = r.pipeline(transaction=False)
    for fid in ids:
        pipe.hgetall(keys.feeder_key(fid))
    return {
        fid: ({_s(k): _s(v) for k, v in h.items()} or None) for fid, h in zip(ids, pipe.execute())
    }


def sweep(
    ledger: GapLedger,
    *,
    now_ms: int,
    settings: Settings,
    send_repair: Callable[[str], None],
    send_snapshot: Callable[[], None],
) -> dict:
    r = ledger.r
    gaps = ledger.open_gaps()
    closed = set(coverage.close_covered(ledger, gaps, now_ms, f"sweep:{now_ms}"))
    if closed:
        log.info("sweep: %d gaps covered by other feeders of their shard: closed", len(closed))
        gaps = [g for g in gaps if g.get("id") not in closed]
    requeue_ms = int(settings.backfill_requeue_after_s * 1000)
    due = planning.gaps_to_enqueue(gaps, now_ms, requeue_ms)
    retried = failed_gaps_due(gaps, now_ms, requeue_ms)
    for gid in due + retried:
        send_repair(gid)
    if due or retried:
        ledger.mark_enqueued(due + retried, now_ms)
        log.info(
            "sweep: re-sent %d gaps (lost task or expired lease), retried %d failed gaps",
            len(due),
            len(retried),
        )

    marks = read_watermarks(r)
    covered_names = [keys.backfill_stale(*k) for k in marks]
    covered_raw = r.mget(covered_names) if covered_names else []
    covered = {k: int(v) for k, v in zip(marks, covered_raw) if v is not None}
    open_keys = {(g.get("channel", ""), g.get("instId", "")) for g in gaps}
    stale = planning.stale_watermarks(
        marks, now_ms, int(settings.backfill_stale_s * 1000), covered, open_keys
    )
    for gap in stale:
        gid = ledger.create(gap, "backfill-sweep", now_ms)
        r.set(keys.backfill_stale(gap.channel, gap.instId), gap.end_ms)
        send_repair(gid)
        ledger.mark_enqueued([gid], now_ms)

    feeders = read_feeders(r)
    dead = planning.dead_feeders(feeders, now_ms, int(settings.feeder_dead_s * 1000))
    alive = [f for f in feeders if f not in dead]
    account_marks = any(ch in PRIVATE_CHANNELS for ch, _ in marks)
    snapshot = bool(dead) or (not alive and account_marks)
    if snapshot:
        if dead:
            log.warning(
                "sweep: feeder(s) %s dead (no heartbeat for %.0f s): snapshotting "
                "balances and positions over REST",
                ", ".join(dead),
                settings.feeder_dead_s,
            )
            r.srem(keys.FEEDERS, *dead)  # reported once; a restarted feeder adds itself
        send_snapshot()
    return {
        "covered": len(closed),
        "resent": len(due),
        "retried_failed": len(retried),
        "stale_gaps": len(stale),
        "dead_feeders": dead,
        "snapshot": snapshot,
    }
