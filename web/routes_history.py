"""History from MongoDB, paged: `{"items": [...], "next": cursor | null}`, oldest first.

Each endpoint takes `start`/`end` (ms or ISO-8601, [start, end)), `limit` (default 100, at most
1000) and `cursor` (the previous page's `next`, with every other parameter unchanged). Items are
the stored documents as OKX sent them (strings), without the storage's `_id` and `dt`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from fastapi import APIRouter, Query, Request

from core import keys
from web import paging, params
from web.deps import INST_ID, STORES
from web.history import public, read_page
from web.responses import Json
from web.state_bodies import vwap_item
from web.stores import Stores

router = APIRouter(tags=["history"])

Item = Callable[[dict[str, Any]], dict[str, Any]]


def paged(
    request: Request,
    coll: Any,
    base: Mapping[str, Any],
    *,
    start: str | None,
    end: str | None,
    limit: int | None,
    cursor: str | None,
    item: Item = public,
) -> Json:
    rng = params.time_range(start, end)
    n = params.limit(limit)
    query = {k: v for k, v in request.query_params.items() if k not in ("cursor", "limit")}
    fp = paging.fingerprint(request.url.path, query)
    after = paging.decode(cursor, fp)
    docs, pos = read_page(coll, base, rng, after, n)
    # a ready response: FastAPI would otherwise validate up to 1000 items against the annotation
    return Json(
        {
            "items": [item(d) for d in docs],
            "next": paging.encode(fp, pos) if pos is not None else None,
        }
    )


START = Query(None, description="from this time (ms or ISO-8601), inclusive")
END = Query(None, description="to this time (ms or ISO-8601), exclusive")
LIMIT = Query(None, description=f"items per page, 1 to {params.MAX_LIMIT} (default 100)")
CURSOR = Query(None, description="the previous page's `next`")


def trade_item(d: dict[str, Any]) -> dict[str, Any]:
    return {
        "tradeId": d["tradeId"],
        "px": d["px"],
        "sz": d["sz"],
        "side": d.get("side", ""),
        "ts": d["ts"],
        "validated": bool(d.get("validated", False)),
    }


@router.get("/trades/{instId}")
def trades(
    request: Request,
    instId: str = INST_ID,  # noqa: N803
    start: str | None = START,
    end: str | None = END,
    limit: int | None = LIMIT,
    cursor: str | None = CURSOR,
    s: Stores = STORES,
) -> Json:
    """Stored trades of a range, oldest first, each exactly once across the pages."""
    base = {"instId": instId}
    return paged(
        request,
        s.mongo[keys.TRADES],
        base,
        start=start,
        end=end,
        limit=limit,
        cursor=cursor,
        item=trade_item,
    )


def candle_item(d: dict[str, Any]) -> dict[str, Any]:
    source = d.get("source") or "okx"
    okx = source == "okx"  # OKX's own bars are stored once confirmed: complete and final
    return {
        "ts": d["ts"],
        **{k: d.get(k, "") for k in ("o", "h", "l", "c", "vol", "volCcy")},
        "complete": bool(d.get("complete", okx)),
        "final": bool(d.get("final", okx)),
        "source": source,
    }


@router.get("/candles/{instId}")
def candles(
    request: Request,
    instId: str = INST_ID,  # noqa: N803
    bar: str | None = Query(None, description="OKX bar, default 1m"),
    source: str | None = Query(None, description="okx (OKX's candles, default) or trades"),
    start: str | None = START,
    end: str | None = END,
    limit: int | None = LIMIT,
    cursor: str | None = CURSOR,
    s: Stores = STORES,
) -> Json:
    """Candles of one bar and source: OKX's confirmed ones, or those built from trades."""
    b, src = params.bar(bar), params.candle_source(source)
    # OKX's candles may lack `source` (written before it existed): "not trades" finds them
    # ($nin, not $ne: nx-27017 drops documents lacking the field from $ne beside another
    # condition; the two mean the same to MongoDB)
    which: Any = "trades" if src == "trades" else {"$nin": ["trades"]}
    base = {"instId": instId, "bar": b, "source": which}
    return paged(
        request,
        s.mongo[keys.CANDLES_COLLECTION],
        base,
        start=start,
        end=end,
        limit=limit,
        cursor=cursor,
        item=candle_item,
    )


@router.get("/vwap/{instId}/range")
def vwap_range(
    request: Request,
    instId: str = INST_ID,  # noqa: N803
    start: str | None = START,
    end: str | None = END,
    limit: int | None = LIMIT,
    cursor: str | None = CURSOR,
    s: Stores = STORES,
) -> Json:
    """One VWAP per second mark: ts, vwap, validated, n, window_ms."""
    return paged(
        request,
        s.mongo[keys.VWAP_COLLECTION],
        {"instId": instId},
        start=start,
        end=end,
        limit=limit,
        cursor=cursor,
        item=vwap_item,
    )


@router.get("/books/{instId}")
def books(
    request: Request,
    instId: str = INST_ID,  # noqa: N803
    channel: str | None = Query(None, description="books, books5, bbo-tbt, ..."),
    start: str | None = START,
    end: str | None = END,
    limit: int | None = LIMIT,
    cursor: str | None = CURSOR,
    s: Stores = STORES,
) -> Json:
    """Sampled book snapshots (one per BOOKS_SAMPLE_MS window, plus the full ones)."""
    base: dict[str, Any] = {"instId": instId}
    if channel:
        base["channel"] = channel
    return paged(
        request, s.mongo[keys.BOOKS], base, start=start, end=end, limit=limit, cursor=cursor
    )


def _account_route(path: str, collection: str, key: str, doc: str) -> None:
    """An account history endpoint filtered by `key` (instId or ccy), if given."""

    def endpoint(
        request: Request,
        start: str | None = START,
        end: str | None = END,
        limit: int | None = LIMIT,
        cursor: str | None = CURSOR,
        value: str | None = Query(None, alias=key, description=f"only this {key}"),
        s: Stores = STORES,
    ) -> Json:
        base: dict[str, Any] = {}
        if value:
            if key == "instId":
                params.inst_id_shape(value)
            base[key] = value
        return paged(
            request, s.mongo[collection], base, start=start, end=end, limit=limit, cursor=cursor
        )

    endpoint.__doc__ = doc + f" Filter: `{key}`."
    endpoint.__name__ = path.strip("/").replace("/", "_")
    router.add_api_route(path, endpoint, methods=["GET"])


_account_route("/orders/history", keys.ORDER, "instId", "Every stored order event.")
_account_route("/fills", keys.FILLS, "instId", "Fills (REST-synced).")
_account_route("/balances/history", keys.BALANCE, "ccy", "Every stored balance update.")
_account_route("/positions/history", keys.POSITION, "instId", "Every stored position update.")
