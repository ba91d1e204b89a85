"""The audit: REST is the reliable check of a faulty socket. Per instrument, over a trailing
window (from where the last audit stopped, AUDIT_WINDOW_S at most, ending AUDIT_LAG_S before
now), stored trades are compared with history-trades:

    missing   on REST, not stored  -> inserted (validated)
    confirmed on both              -> marked validated
    extra     stored, not on REST  -> counted and logged, never deleted (a human looks)

`audit:<instId>` keeps validated_until and the last counts; the counters below export drift.
"""

from __future__ import annotations

import logging
from typing import Any

from prometheus_client import Counter, Gauge

from core import keys
from okx.clock import now_ms as clock_ms
from tasks import documents
from tasks.backfill import plan as planning
from tasks.backfill.plan import Step
from tasks.writers.mongo_history import mark_trades_validated

log = logging.getLogger(__name__)

DRIFT = Counter("okx_audit_trades_total", "Trades found by the audit", ["instId", "outcome"])
VALIDATED_UNTIL = Gauge(
    "okx_audit_validated_until_ms", "Trades validated up to (exchange ms)", ["instId"]
)


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def audit_instruments(r: Any, configured: tuple[str, ...]) -> list[str]:
    if configured:
        return list(configured)
    found = set()
    for name in r.scan_iter(match=keys.watermark_pattern("trades"), count=1000):
        channel, inst = keys.parse_watermark_key(_s(name))
        if channel in planning.TRADE_CHANNELS:
            found.add(inst)
    return sorted(found)


def stored_trade_ids(db: Any, inst_id: str, start_ms: int, end_ms: int) -> list[str]:
    cursor = db[keys.TRADES].find(
        {
            "instId": inst_id,
            "dt": {
                "$gte": documents.to_datetime(str(start_ms)),
                "$lte": documents.to_datetime(str(end_ms)),
            },
        },
        {"tradeId": 1},
    )
    return [d["tradeId"] for d in cursor]


def audit_instrument(
    inst_id: str, *, source: Any, store: Any, r: Any, now_ms: int, window_ms: int, lag_ms: int
) -> dict | None:
    """Audit one instrument; the counts, or None when there was nothing new to audit."""
    raw = r.hget(keys.audit(inst_id), "validated_until")
    window = planning.audit_window(now_ms, int(raw) if raw else None, window_ms, lag_ms)
    if window is None:
        return None
    start, end = window
    rest: dict[str, dict] = {}
    for page in source.pages(Step("trades", inst_id, start_ms=start, end_ms=end), None):
        for rec in page.records:
            rest[rec["tradeId"]] = rec
    drift = planning.trade_drift(stored_trade_ids(store.db, inst_id, start, end), rest)
    if drift.missing:
        store.write("trades", [rest[t] for t in drift.missing], source="rest", validated=True)
    validated = mark_trades_validated(store.db, inst_id, drift.confirmed)
    result = {
        "instId": inst_id,
        "window_start": start,
        "window_end": end,
        "missing": len(drift.missing),
        "extra": len(drift.extra),
        "confirmed": len(drift.confirmed),
        "newly_validated": validated,
        "validated_until": end,
        "at_ms": clock_ms(),
    }
    r.hset(keys.audit(inst_id), mapping={k: str(v) for k, v in result.items()})
    DRIFT.labels(inst_id, "missing").inc(len(drift.missing))
    DRIFT.labels(inst_id, "extra").inc(len(drift.extra))
    DRIFT.labels(inst_id, "confirmed").inc(len(drift.confirmed))
    VALIDATED_UNTIL.labels(inst_id).set(end)
    if drift.missing or drift.extra:
        log.warning(
            "audit %s %d..%d: %d missing (inserted), %d extra (kept), %d confirmed; missing ids %s",
            inst_id,
            start,
            end,
            len(drift.missing),
            len(drift.extra),
            len(drift.confirmed),
            drift.missing[:10],
        )
    else:
        log.info(
            "audit %s %d..%d: %d trades confirmed, no drift",
            inst_id,
            start,
            end,
            len(drift.confirmed),
        )
    return result


def sync_fills(
    *,
    source: Any,
    store: Any,
    r: Any,
    inst_types: tuple[str, ...],
    now_ms: int,
    first_window_ms: int,
    overlap_ms: int = 60_000,
) -> int:
    """Fills have no live source here (the WS fills channel needs VIP4+): page every fill since
    the newest one already synced (exchange time, so a skewed local clock loses nothing)."""
    total = 0
    for inst_type in inst_types:
        raw = r.get(keys.backfill_fills(inst_type))
        since = int(raw) - overlap_ms if raw else now_ms - first_window_ms
        newest = int(raw) if raw else 0
        # the end is a day ahead: the exchange has no future fills, and our clock may be behind
        for page in source.pages(
            Step("fills", inst_type, start_ms=max(0, since), end_ms=now_ms + 86_400_000), None
        ):
            if page.records:
                store.write("fills", page.records, source="rest")
                total += len(page.records)
                newest = max(newest, max(int(f["ts"]) for f in page.records))
        if newest:
            r.set(keys.backfill_fills(inst_type), newest)
    return total
