"""Current state from Redis (docs/data-model.md, core/keys.py): what the workers last wrote.

Every value is the string the workers stored (prices and sizes stay exact); a missing key is a
404 saying which state is missing, for an instrument that exists.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from core import keys
from web import params
from web import state_bodies as bodies
from web.deps import STORES, check_inst_id
from web.history import newest_before
from web.params import ApiError
from web.responses import Json
from web.state_bodies import vwap_item
from web.stores import Stores

router = APIRouter(tags=["current state"])

ORDER_SCAN_MAX = 5000  # order events read back at most for one /orders request


def _hash_or_404(r: Any, key: str, what: str) -> dict[str, str]:
    found: dict[str, str] = r.hgetall(key)
    if not found:
        raise ApiError(404, f"no {what} in the current state")
    return found


async def _ahash_or_404(r: Any, key: str, what: str) -> dict[str, str]:
    found: dict[str, str] = await r.hgetall(key)
    if not found:
        raise ApiError(404, f"no {what} in the current state")
    return found


# The latest-state endpoints below are the hot path. A well-formed request that finds its state
# is answered before routing by web/lean_state.py with the same bytes (web/state_bodies.py);
# these routes answer everything else (bad parameters, unknown ids, missing state) and declare
# the endpoints for /openapi.json. `async def` over the asyncio Redis client: no threadpool hop,
# the loop never blocked. bench/api.py measures them.


@router.get("/instruments")
def instruments(s: Stores = STORES) -> dict[str, Any]:
    """Instruments with collected data (watermarks or current state)."""
    return {"items": sorted(s.instruments.current())}


@router.get("/ticker/{instId}", response_class=Json)
async def ticker(request: Request, instId: str) -> Json:  # noqa: N803
    """The ticker hash as the workers stored it (OKX's fields, strings)."""
    s = await check_inst_id(request, instId)
    h = await _ahash_or_404(s.state_async, keys.ticker(instId), f"ticker for {instId}")
    return Json(None, raw=bodies.hash_body(h))


@router.get("/book/{instId}", response_class=Json)
async def book(
    request: Request,
    instId: str,  # noqa: N803
    depth: int | None = Query(None, description="levels per side, 1 to 5"),
) -> Json:
    """The top levels of the book: [price, size, ...] per level as OKX sends them."""
    s = await check_inst_id(request, instId)
    n = params.depth(depth)
    h: dict[str, str] = await s.state_async.hgetall(keys.books5(instId))
    if h:
        return Json(None, raw=bodies.books5_body(instId, h, n))
    h = await _ahash_or_404(s.state_async, keys.book(instId), f"book for {instId}")
    return Json(None, raw=bodies.top1_body(instId, h))


@router.get("/trades/{instId}/latest", response_class=Json)
async def latest_trades(
    request: Request,
    instId: str,  # noqa: N803
    limit: int | None = Query(None, description="newest trades, at most 1000 (Redis keeps 100)"),
) -> Json:
    """The newest trades first: tradeId, px, sz, side, ts."""
    s = await check_inst_id(request, instId)
    n = params.limit(limit)
    members = await s.state_async.zrevrange(keys.trades(instId), 0, n - 1)
    return Json(None, raw=bodies.trades_body(members))


@router.get("/candle/{instId}", response_class=Json)
async def candle(
    request: Request,
    instId: str,  # noqa: N803
    bar: str | None = Query(None, description="OKX bar, default 1m"),
) -> Json:
    """The current (forming or just confirmed) candle of one bar."""
    s = await check_inst_id(request, instId)
    b = params.bar(bar)
    key = keys.candle(instId, b)
    h = await _ahash_or_404(s.state_async, key, f"{b} candle for {instId}")
    return Json(None, raw=bodies.hash_body(h))


def _vwap_as_of(s: Stores, inst: str, at: int) -> dict[str, Any]:
    doc = newest_before(s.mongo[keys.VWAP_COLLECTION], {"instId": inst}, at)
    if doc is None:
        raise ApiError(404, f"no VWAP for {inst} at or before {at}")
    return vwap_item(doc)


@router.get("/vwap/{instId}", response_class=Json)
async def vwap(
    request: Request,
    instId: str,  # noqa: N803
    ts: str | None = Query(None, description="as of this time (ms or ISO-8601); default latest"),
) -> Json:
    """The latest rolling VWAP (Redis), or the one in force at `ts` (MongoDB)."""
    s = await check_inst_id(request, instId)
    if ts is None:
        key = keys.vwap_key(instId)
        h = await _ahash_or_404(s.state_async, key, f"VWAP for {instId}")
        return Json(None, raw=bodies.vwap_body(h))
    at = params.parse_time("ts", ts)
    return Json(await run_in_threadpool(_vwap_as_of, s, instId, at))


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
