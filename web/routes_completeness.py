"""Completeness: the gap ledger (core/gaps.py, Redis) and per-instrument coverage.

`gaps` lists ledger entries newest first (by gap id), paged by id; filters status, channel,
instId and a time window (gaps overlapping [start, end)). One request reads at most
GAP_SCAN_MAX ledger hashes: when its filters match few of them the page is short and `next`
continues the scan, so no request is unbounded however big the ledger grows (GAPS_KEEP).

`coverage/{instId}`: per channel the feeder collects for it (its watermarks), the first and
last stored times in MongoDB, the last exchange time the feeder saw, the open and the
unrepairable gaps; and `validated_until` (derive's, else the audit's).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Query, Request

from core import contract, keys
from core.errors import BadGap
from core.gaps import Gap
from web import paging, params
from web.deps import INST_ID, STORES
from web.history import first_and_last_ms
from web.params import ApiError
from web.stores import Stores

log = logging.getLogger("web.gaps")
router = APIRouter(tags=["completeness"])

GAP_SCAN_MAX = 10_000
_CHUNK = 500
OPEN_STATUSES = ("open", "filling", "failed")  # still to repair: the ids in gaps:open


def gap_item(g: Gap) -> dict[str, Any]:
    return {
        "id": g.id,
        "channel": g.channel,
        "instId": g.instId,
        "start": g.start_ms,
        "end": g.end_ms,
        "status": g.status,
        "reason": g.reason,
        "cause": g.cause,
    }


def _ids(r: Any, status: str | None, below: int | None) -> list[int]:
    source = keys.GAPS_OPEN if status in OPEN_STATUSES else keys.GAPS_ALL
    ids = sorted((int(i) for i in r.zrange(source, 0, -1) if str(i).isdigit()), reverse=True)
    return [i for i in ids if below is None or i < below]


def scan_gaps(
    r: Any, *, status: str | None = None, below: int | None = None, budget: int = GAP_SCAN_MAX
) -> tuple[list[Gap], int | None]:
    """Ledger gaps newest first (ids below `below`), reading at most `budget` hashes; and the id
    the scan stopped before (None: the ledger was read to its end)."""
    ids = _ids(r, status, below)
    found: list[Gap] = []
    for at in range(0, min(len(ids), budget), _CHUNK):
        chunk = ids[at : min(at + _CHUNK, budget)]
        pipe = r.pipeline(transaction=False)
        for gap_id in chunk:
            pipe.hgetall(keys.gap_key(str(gap_id)))
        for h in pipe.execute():
            if not h:
                continue  # trimmed from gaps:all's window, or expired
            try:
                found.append(Gap.from_fields(h))
            except BadGap as exc:
                log.warning("unreadable gap in the ledger: %s", exc)
    stopped = ids[budget - 1] if len(ids) > budget else None
    return found, stopped


def _matches(g: Gap, status: str | None, channel: str | None, inst: str | None, rng: Any) -> bool:
    return (
        (status is None or g.status == status)
        and (channel is None or g.channel == channel)
        and (inst is None or g.instId == inst)
        and g.start_ms < rng.end_ms
        and max(g.end_ms, g.start_ms) >= rng.start_ms
    )


@router.get("/gaps")
def gaps(
    request: Request,
    status: str | None = Query(None, description=", ".join(contract.GAP_STATUSES)),
    channel: str | None = Query(None),
    instId: str | None = Query(None),  # noqa: N803
    start: str | None = Query(None, description="gaps ending at or after this time"),
    end: str | None = Query(None, description="gaps starting before this time"),
    limit: int | None = Query(None),
    cursor: str | None = Query(None),
    s: Stores = STORES,
) -> dict[str, Any]:
    """Gaps of the ledger, newest first: id, channel, instId, start, end (ms), status, reason."""
    st = params.one_of("status", status, contract.GAP_STATUSES)
    if instId:
        params.inst_id_shape(instId)
    rng = params.time_range(start, end)
    n = params.limit(limit)
    query = {k: v for k, v in request.query_params.items() if k not in ("cursor", "limit")}
    fp = paging.fingerprint(request.url.path, query)
    after = paging.decode(cursor, fp)
    found, stopped = scan_gaps(s.ledger, status=st, below=after.key if after else None)
    picked = [g for g in found if _matches(g, st, channel or None, instId or None, rng)]
    if len(picked) > n:
        nxt: int | None = int(picked[n - 1].id)
        picked = picked[:n]
    else:
        nxt = stopped
    return {
        "items": [gap_item(g) for g in picked],
        "next": paging.encode(fp, paging.Position(nxt, "")) if nxt is not None else None,
    }


def stored_range(s: Stores, channel: str, inst: str) -> tuple[int | None, int | None]:
    """First and last stored exchange times of one channel of one instrument."""
    if channel.startswith("trades"):
        return first_and_last_ms(s.mongo[keys.TRADES], {"instId": inst})
    if channel == "tickers":
        return first_and_last_ms(s.mongo[keys.TICKERS], {"instId": inst})
    if channel.startswith("candle"):
        bar = channel[len("candle") :]
        base = {"instId": inst, "bar": bar, "source": {"$nin": ["trades"]}}  # not $ne: nx-27017
        return first_and_last_ms(s.mongo[keys.CANDLES_COLLECTION], base)
    if channel.startswith("books") or channel.startswith("bbo"):
        return first_and_last_ms(s.mongo[keys.BOOKS], {"instId": inst, "channel": channel})
    return None, None


def _validated_until(s: Stores, inst: str) -> int | None:
    raw = s.state.hget(keys.VALIDATED_UNTIL_KEY, inst) or s.ledger.hget(
        keys.audit(inst), "validated_until"
    )
    return int(raw) if raw and str(raw).isdigit() else None


@router.get("/coverage/{instId}")
def coverage(instId: str = INST_ID, s: Stores = STORES) -> dict[str, Any]:  # noqa: N803
    """Per channel: first/last stored time, the feeder's watermark, open and unrepairable gaps."""
    watermarks: dict[str, dict[str, str]] = {}
    for name in s.ledger.scan_iter(match=keys.WATERMARK_PATTERN, count=1000):
        channel, inst = keys.parse_watermark_key(name)
        if inst == instId:
            watermarks[channel] = s.ledger.hgetall(name)
    found, stopped = scan_gaps(s.ledger)
    mine = [g for g in found if g.instId == instId]
    channels = sorted(set(watermarks) | {g.channel for g in mine})
    if not channels:
        raise ApiError(404, f"no channel collected for {instId}")
    out = []
    for channel in channels:
        first, last = stored_range(s, channel, instId)
        wm = watermarks.get(channel, {})
        of = [g for g in mine if g.channel == channel]
        out.append(
            {
                "channel": channel,
                "first_ms": first,
                "last_ms": last,
                "watermark_ms": int(wm["ts"]) if wm.get("ts", "").isdigit() else None,
                "open_gaps": [gap_item(g) for g in of if g.status in OPEN_STATUSES],
                "unrepairable_gaps": [gap_item(g) for g in of if g.status == "unrepairable"],
            }
        )
    return {
        "instId": instId,
        "validated_until": _validated_until(s, instId),
        "channels": out,
        "ledger_truncated": stopped is not None,
    }
