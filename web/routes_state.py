"""Current state from Redis (docs/data-model.md, core/keys.py): what the workers last wrote.

Every value is the string the workers stored (prices and sizes stay exact); a missing key is a
404 saying which state is missing, for an instrument that exists.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Query

from core import keys
from web import params
from web.deps import INST_ID, STORES
from web.history import newest_before
from web.params import ApiError
from web.stores import Stores

router = APIRouter(tags=["current state"])

ORDER_SCAN_MAX = 5000  # order events read back at most for one /orders request


def _hash_or_404(r: Any, key: str, what: str) -> dict[str, str]:
    found: dict[str, str] = r.hgetall(key)
    if not found:
        raise ApiError(404, f"no {what} in the current state")
    return found


@router.get("/instruments")
def instruments(s: Stores = STORES) -> dict[str, Any]:
    """Instruments with collected data (watermarks or current state)."""
    return {"items": sorted(s.instruments.known())}


@router.get("/ticker/{instId}")
def ticker(instId: str = INST_ID, s: Stores = STORES) -> dict[str, str]:  # noqa: N803
    return _hash_or_404(s.state, keys.ticker(instId), f"ticker for {instId}")


@router.get("/book/{instId}")
def book(
    instId: str = INST_ID,  # noqa: N803
    depth: int | None = Query(None, description="levels per side, 1 to 5"),
    s: Stores = STORES,
) -> dict[str, Any]:
    """The top levels of the book: [price, size, ...] per level as OKX sends them."""
    n = params.depth(depth)
    h: dict[str, str] = s.state.hgetall(keys.books5(instId))
    if h:
        asks, bids = orjson.loads(h["asks"])[:n], orjson.loads(h["bids"])[:n]
    else:
        h = _hash_or_404(s.state, keys.book(instId), f"book for {instId}")
        asks = [[h["askPx"], h["askSz"]]] if h.get("askPx") else []
        bids = [[h["bidPx"], h["bidSz"]]] if h.get("bidPx") else []
    return {
        "instId": instId,
        "asks": asks,
        "bids": bids,
        "ts": h.get("ts", ""),
        "seqId": h.get("seqId", ""),
        "channel": h.get("channel", ""),
    }


@router.get("/trades/{instId}/latest")
def latest_trades(
    instId: str = INST_ID,  # noqa: N803
    limit: int | None = Query(None, description="newest trades, at most 1000 (Redis keeps 100)"),
    s: Stores = STORES,
) -> dict[str, Any]:
    """The newest trades first: tradeId, px, sz, side, ts."""
    n = params.limit(limit)
    members = s.state.zrevrange(keys.trades(instId), 0, n - 1)
    return {"items": [orjson.loads(m) for m in members]}


@router.get("/candle/{instId}")
def candle(
    instId: str = INST_ID,  # noqa: N803
    bar: str | None = Query(None, description="OKX bar, default 1m"),
    s: Stores = STORES,
) -> dict[str, str]:
    """The current (forming or just confirmed) candle of one bar."""
    b = params.bar(bar)
    return _hash_or_404(s.state, keys.candle(instId, b), f"{b} candle for {instId}")


def vwap_item(h: dict[str, Any]) -> dict[str, Any]:
    """A VWAP point as the API shows it (Redis hash or MongoDB document)."""
    validated = h.get("validated")
    return {
        "ts": int(h["ts"]),
        "vwap": str(h["vwap"]),
        "validated": validated in (True, "1", "true"),
        "n": int(h.get("n", 0)),
        "window_ms": int(h.get("window_ms", 0)),
    }


@router.get("/vwap/{instId}")
def vwap(
    instId: str = INST_ID,  # noqa: N803
    ts: str | None = Query(None, description="as of this time (ms or ISO-8601); default latest"),
    s: Stores = STORES,
) -> dict[str, Any]:
    """The latest rolling VWAP (Redis), or the one in force at `ts` (MongoDB)."""
    if ts is None:
        return vwap_item(_hash_or_404(s.state, keys.vwap_key(instId), f"VWAP for {instId}"))
    at = params.parse_time("ts", ts)
    doc = newest_before(s.mongo[keys.VWAP_COLLECTION], {"instId": instId}, at)
    if doc is None:
        raise ApiError(404, f"no VWAP for {instId} at or before {at}")
    return vwap_item(doc)


def _scan_hashes(r: Any, pattern: str) -> list[dict[str, str]]:
    names = sorted(r.scan_iter(match=pattern, count=1000))
    pipe = r.pipeline(transaction=False)
    for name in names:
        pipe.hgetall(name)
    return [h for h in pipe.execute() if h]


@router.get("/balances")
def balances(s: Stores = STORES) -> dict[str, Any]:
    """One entry per currency: ccy, cashBal, uTime."""
    return {"items": _scan_hashes(s.state, keys.BALANCE_PATTERN)}


@router.get("/positions")
def positions(s: Stores = STORES) -> dict[str, Any]:
    return {"items": _scan_hashes(s.state, keys.POSITION_PATTERN)}


@router.get("/orders")
def orders(
    state: str | None = Query(None, description="live, partially_filled, filled, canceled..."),
    instId: str | None = Query(None),  # noqa: N803
    limit: int | None = Query(None),
    s: Stores = STORES,
) -> dict[str, Any]:
    """Each recent order at its newest event (order<N>, newest first), optionally of one state.

    Reads back at most ORDER_SCAN_MAX events from the newest N down; the full history is
    /api/v1/orders/history."""
    n = params.limit(limit)
    if instId is not None:
        params.inst_id_shape(instId)
    top = int(s.state.get(keys.ORDER_COUNTER) or 0)
    newest: dict[str, dict[str, str]] = {}
    picked: list[dict[str, str]] = []
    low = max(top - ORDER_SCAN_MAX, 0)
    for hi in range(top, low, -500):
        pipe = s.state.pipeline(transaction=False)
        numbers = range(hi, max(hi - 500, low), -1)
        for number in numbers:
            pipe.hgetall(keys.order_key(number))
        for event in pipe.execute():
            ord_id = event.get("ordId") if event else None
            if not ord_id or ord_id in newest:
                continue  # expired, or an older event of an order already seen
            newest[ord_id] = event
            if (state is None or event.get("state") == state) and (
                instId is None or event.get("instId") == instId
            ):
                picked.append(event)
                if len(picked) >= n:
                    return {"items": picked}
    return {"items": picked}
