"""What an export reads: the request (kind, instrument, range, candle bar and source), checked,
and the MongoDB filter, sort and tie order it turns into. Pure: no I/O.

The range is half-open, [start, end): two exports of adjacent ranges hold every document once.
It is applied to `dt` (the BSON datetime every document carries, and the second field of each
collection's `(instId, dt)` index), so the cursor's sort is served by the index and never
becomes an in-memory sort on the server. Documents of the same millisecond come out in the
kind's tie order (trades by tradeId, orders by ordId and state, ...), put in order by the
streamer one millisecond at a time, so the file's order does not depend on the server's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from core.errors import PlanError
from core.keys import CANDLES, FILLS, ORDER, TRADES, VWAP_COLLECTION
from okx.channels import CANDLE_BARS
from tasks.backfill.plan import parse_time

KINDS = ("trades", "candles", "vwap", "orders", "fills")
FORMATS = ("parquet", "csv")
SOURCES = ("okx", "trades")

COLLECTION = {
    "trades": TRADES,
    "candles": CANDLES,
    "vwap": VWAP_COLLECTION,
    "orders": ORDER,
    "fills": FILLS,
}
# fields that order documents of the same millisecond (ids compared as numbers)
TIE_FIELDS: dict[str, tuple[str, ...]] = {
    "trades": ("tradeId",),
    "candles": ("_id",),
    "vwap": ("_id",),
    "orders": ("ordId", "state"),
    "fills": ("billId",),
}


@dataclass(frozen=True)
class ExportRequest:
    kind: str
    inst_id: str
    start_ms: int
    end_ms: int
    bar: str = "1m"
    source: str = "okx"


def make_request(
    kind: str,
    inst_id: str,
    start: Any,
    end: Any,
    *,
    bar: str | None = None,
    source: str | None = None,
) -> ExportRequest:
    """A checked request; PlanError (an operator's mistake, one line) when it cannot be read."""
    if kind not in KINDS:
        raise PlanError(f"unknown kind {kind!r}: one of {', '.join(KINDS)}")
    if not isinstance(inst_id, str) or not inst_id.strip() or inst_id != inst_id.strip():
        raise PlanError(f"instrument must be an OKX instId such as BTC-USDT, got {inst_id!r}")
    start_ms = parse_time(start, "--start")
    end_ms = parse_time(end, "--end")
    if end_ms <= start_ms:
        raise PlanError(f"--end ({end}) must be after --start ({start})")
    if kind != "candles" and (bar is not None or source is not None):
        raise PlanError("--bar and --source are for candles only")
    bar = "1m" if bar is None else bar
    source = "okx" if source is None else source
    if bar not in CANDLE_BARS:
        raise PlanError(f"unknown bar {bar!r}: one of {', '.join(CANDLE_BARS)}")
    if source not in SOURCES:
        raise PlanError(f"unknown source {source!r}: okx (OKX's candles) or trades (ours)")
    return ExportRequest(kind, inst_id, start_ms, end_ms, bar, source)


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def mongo_filter(req: ExportRequest) -> dict[str, Any]:
    """The find/count_documents filter of a request."""
    flt: dict[str, Any] = {"instId": req.inst_id}
    if req.kind == "candles":
        flt["bar"] = req.bar
        # OKX's own candles may lack `source` (written before it existed): missing means okx
        flt["source"] = {"$in": [None, "okx"]} if req.source == "okx" else "trades"
    flt["dt"] = {"$gte": _dt(req.start_ms), "$lt": _dt(req.end_ms)}
    return flt


SORT = [("dt", 1)]


def tie_key(kind: str, doc: dict[str, Any]) -> tuple[tuple[int, str], ...]:
    """Order within one millisecond: digit strings compare as numbers (shorter is smaller)."""
    out = []
    for name in TIE_FIELDS[kind]:
        v = doc.get(name)
        s = v if isinstance(v, str) else str(v)
        out.append((len(s), s))
    return tuple(out)
