"""Parked history that outgrew its bound becomes recorded gaps (core/gaps.py), never lost silently.

`windows` is pure: the evicted entries' records -> one Gap per (channel, instId), spanning the
exchange times (and, for trades, the tradeIds) of what was dropped. The trades, candles and
orders windows are repaired from REST by the existing backfill (tasks/backfill/plan.py); books
and tickers windows have no REST history and end as `unrepairable`, visible in the ledger.
`record` writes them and asks backfill for each repair.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import Counter

from core.gaps import Gap, record_gap
from tasks.history.pending import decode

log = logging.getLogger(__name__)

CAUSE = "history_overflow"
PRODUCER = "history"

EVICTED = Counter(
    "okx_history_evicted_records_total",
    "Parked history records dropped at HISTORY_PENDING_MAX_BYTES (recorded as gaps)",
    ["kind"],
)


def _stream(kind: str, rec: dict) -> tuple[str, str, str] | None:
    """(channel, instId, time field) of the ledger stream a record belongs to."""
    if kind == "trades":
        return str(rec.get("channel") or "trades"), str(rec.get("instId", "")), "ts"
    if kind == "candles":
        return f"candle{rec.get('bar', '')}", str(rec.get("instId", "")), "ts"
    if kind == "books":
        return str(rec.get("channel") or "books5"), str(rec.get("instId", "")), "ts"
    if kind == "tickers":
        return "tickers", str(rec.get("instId", "")), "ts"
    if kind == "orders":
        return "orders", str(rec.get("instType") or "ANY"), "uTime"
    if kind in ("balances", "positions"):
        return "balance_and_position", "ANY", "uTime"
    return None


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def windows(parts: Iterable[tuple[str, list[dict]]]) -> list[Gap]:
    """One gap per stream covering every record of `parts` (pure)."""
    times: dict[tuple[str, str], list[int]] = {}  # -> [min ts, max ts]
    ids: dict[tuple[str, str], list[int]] = {}  # -> [min tradeId, max tradeId]
    for kind, records in parts:
        for rec in records:
            stream = _stream(kind, rec)
            ts = _int(rec.get(stream[2])) if stream else None
            if stream is None or ts is None or ts < 0:
                continue
            span = times.setdefault(stream[:2], [ts, ts])
            span[0], span[1] = min(span[0], ts), max(span[1], ts)
            tid = _int(rec.get("tradeId")) if kind == "trades" else None
            if tid is not None:
                got = ids.setdefault(stream[:2], [tid, tid])
                got[0], got[1] = min(got[0], tid), max(got[1], tid)
    gaps = []
    for key, (lo, hi) in sorted(times.items()):
        id_span = ids.get(key)
        gaps.append(
            Gap(
                channel=key[0],
                instId=key[1],
                start_ms=lo,
                end_ms=hi,
                cause=CAUSE,
                # exclusive bounds: the dropped trades are the ids strictly between them
                start_id="" if id_span is None else str(id_span[0] - 1),
                end_id="" if id_span is None else str(id_span[1] + 1),
                reason="parked history over HISTORY_PENDING_MAX_BYTES while MongoDB was down",
            )
        )
    return gaps


def record(
    client: Any,
    evicted: list[bytes],
    *,
    now_ms: int,
    send_repair: Callable[[str], Any] | None = None,
) -> list[Gap]:
    """Record the evicted entries as gaps in the ledger (broker Redis `client`); returns them."""
    parts: list[tuple[str, list[dict]]] = []
    for entry in evicted:
        try:
            parts += [(k, r) for k, r in decode(entry)["parts"]]
        except Exception:  # noqa: BLE001 - our own format; a bad entry is logged, not fatal
            log.exception("history: an evicted entry cannot be read (%d bytes)", len(entry))
    for kind, records in parts:
        EVICTED.labels(kind).inc(len(records))
    stored = []
    for gap in windows(parts):
        g = record_gap(client, gap, PRODUCER, now_ms, atomic=True)
        stored.append(g)
        log.error(
            "history: backlog bound reached; gap %s %s %s %d..%d (ids %s..%s) recorded",
            g.id, g.channel, g.instId, g.start_ms, g.end_ms, g.start_id or "?", g.end_id or "?",
        )  # fmt: skip
        if send_repair is not None:
            try:
                send_repair(g.id)
            except Exception as exc:  # noqa: BLE001 - the beat sweep re-sends open gaps
                log.warning("history: cannot ask for the repair of gap %s: %r", g.id, exc)
    return stored
