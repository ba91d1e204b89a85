"""Signed private REST endpoints (trade/, account/) and the account truth under /sim/truth."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from .appkey import EXCHANGE
from .context import ExchangeContext
from .signing import check_rest


def _resp(code: str, msg: str, data: list, status: int = 200) -> web.Response:
    return web.Response(
        body=orjson.dumps({"code": code, "msg": msg, "data": data}),
        status=status,
        content_type="application/json",
    )


def verify(request: web.Request, body: str) -> web.Response | None:
    """None when OKX's signature headers check out, else the error response."""
    ex: ExchangeContext = request.app[EXCHANGE]
    cfg = ex.cfg
    path_qs = request.raw_path  # path plus query string exactly as sent
    code, msg, status = check_rest(
        request.headers,
        request.method,
        path_qs,
        body,
        cfg.api_key,
        cfg.api_secret,
        cfg.passphrase,
        ex.clock.wall_s(),
    )
    return None if code == "0" else _resp(code, msg, [], status)


def _page(
    records: list[dict], q: Any, cursor_key: str, time_key: str, limit_max: int = 100
) -> list[dict]:
    """Newest first; after/before are exclusive cursors on cursor_key; begin/end on time_key."""

    def num(name: str) -> int | None:
        v = q.get(name)
        return int(v) if v not in (None, "") and v.lstrip("-").isdigit() else None

    after, before, begin, end = num("after"), num("before"), num("begin"), num("end")
    limit = min(max(1, num("limit") or 100), limit_max)
    out = []
    for r in sorted(records, key=lambda r: int(r[cursor_key]), reverse=True):
        k, t = int(r[cursor_key]), int(r[time_key])
        if after is not None and k >= after:
            continue
        if before is not None and k <= before:
            continue
        if (begin is not None and t < begin) or (end is not None and t > end):
            continue
        out.append(r)
    return out[:limit]


def _filter(records: list[dict], q: Any) -> list[dict]:
    it, inst = q.get("instType"), q.get("instId")
    return [
        r for r in records if (not it or r["instType"] == it) and (not inst or r["instId"] == inst)
    ]


def _acct(request: web.Request) -> Any:
    return request.app[EXCHANGE].account


async def orders_history(request: web.Request, archive: bool = False) -> web.Response:
    q = request.query
    if not q.get("instType"):
        return _resp("50014", "Parameter instType can not be empty.", [])
    recs = _filter(_acct(request).done, q)
    if archive:  # the archive excludes orders cancelled without any fill
        recs = [r for r in recs if not (r["state"] == "canceled" and r["accFillSz"] == "0")]
    if q.get("state"):
        recs = [r for r in recs if r["state"] == q["state"]]
    return _resp("0", "", _page(recs, q, "ordId", "cTime"))


async def orders_history_archive(request: web.Request) -> web.Response:
    return await orders_history(request, archive=True)


async def orders_pending(request: web.Request) -> web.Response:
    recs = _filter([dict(o.rec) for o in _acct(request).live.values()], request.query)
    return _resp("0", "", _page(recs, request.query, "ordId", "cTime"))


async def fills(request: web.Request, history: bool = False) -> web.Response:
    q = request.query
    if history and not q.get("instType"):
        return _resp("50014", "Parameter instType can not be empty.", [])
    return _resp("0", "", _page(_filter(_acct(request).fills, q), q, "billId", "ts"))


async def fills_history(request: web.Request) -> web.Response:
    return await fills(request, history=True)


async def balance(request: web.Request) -> web.Response:
    ccy = request.query.get("ccy")
    ccys = set(ccy.split(",")) if ccy else None
    if ccys and len(ccys) > 20:
        return _resp("51000", "Parameter ccy error", [])
    return _resp("0", "", [_acct(request).balance_record(ccys)])


async def positions(request: web.Request) -> web.Response:
    q = request.query
    insts = set(q["instId"].split(",")) if q.get("instId") else None
    recs = [
        p
        for p in _acct(request).open_positions()
        if (not q.get("instType") or p["instType"] == q["instType"])
        and (not insts or p["instId"] in insts)
    ]
    return _resp("0", "", recs)


# ---------------------------------------------------------------- truth (unsigned)
async def truth_orders(request: web.Request) -> web.Response:
    """Every order event in push order; ?final=1 gives final states of completed orders
    followed by the open orders' current states."""
    acct = _acct(request)
    if request.query.get("final") in ("1", "true"):
        return _resp("0", "", list(acct.done) + [dict(o.rec) for o in acct.live.values()])
    return _resp("0", "", list(acct.order_events))


async def truth_fills(request: web.Request) -> web.Response:
    return _resp("0", "", list(_acct(request).fills))


async def truth_balances(request: web.Request) -> web.Response:
    acct = _acct(request)
    return _resp("0", "", [acct.balance_detail(c) for c in sorted(acct.balances)])


async def truth_positions(request: web.Request) -> web.Response:
    acct = _acct(request)
    out = []
    for inst in sorted(acct.positions):
        acct.mark_position(inst)
        out.append(dict(acct.positions[inst]))
    return _resp("0", "", out)


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/api/v5/trade/orders-history", orders_history)
    r.add_get("/api/v5/trade/orders-history-archive", orders_history_archive)
    r.add_get("/api/v5/trade/orders-pending", orders_pending)
    r.add_get("/api/v5/trade/fills", fills)
    r.add_get("/api/v5/trade/fills-history", fills_history)
    r.add_get("/api/v5/account/balance", balance)
    r.add_get("/api/v5/account/positions", positions)
    r.add_get("/sim/truth/orders", truth_orders)
    r.add_get("/sim/truth/fills", truth_fills)
    r.add_get("/sim/truth/balances", truth_balances)
    r.add_get("/sim/truth/positions", truth_positions)
