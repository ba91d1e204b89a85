"""REST: /api/v5 market, public and private endpoints, plus /sim truth, faults and stats."""

from __future__ import annotations

import time
from bisect import bisect_left, bisect_right
from typing import Any

import orjson
from aiohttp import web

from . import rest_private, views
from .appkey import EXCHANGE
from .candles import BARS
from .context import ExchangeContext
from .fault_actions import apply_fault
from .faults import KINDS


class ApiError(Exception):
    def __init__(self, code: str, msg: str, status: int = 200) -> None:
        super().__init__(msg)
        self.code, self.msg, self.status = code, msg, status


def ok(data: list) -> web.Response:
    return web.Response(
        body=orjson.dumps({"code": "0", "msg": "", "data": data}), content_type="application/json"
    )


def fail(code: str, msg: str, status: int = 200) -> web.Response:
    return web.Response(
        body=orjson.dumps({"code": code, "msg": msg, "data": []}),
        status=status,
        content_type="application/json",
    )


def ex_of(request: web.Request) -> ExchangeContext:
    return request.app[EXCHANGE]


def int_param(q: Any, name: str, default: int | None = None) -> int | None:
    v = q.get(name)
    if v is None or v == "":
        return default
    try:
        return int(v)
    except ValueError:
        raise ApiError("51000", f"Parameter {name} error") from None


def limit_param(q: Any, default: int, maximum: int) -> int:
    n = int_param(q, "limit", default)
    assert n is not None
    if n <= 0:
        raise ApiError("51000", "Parameter limit error")
    return min(n, maximum)


def market_of(request: web.Request) -> Any:
    inst = request.query.get("instId")
    if not inst:
        raise ApiError("50014", "Parameter instId can not be empty.")
    m = ex_of(request).markets.get(inst)
    if m is None:
        raise ApiError("51001", "Instrument ID or Spread ID doesn't exist.")
    return m


@web.middleware
async def envelope(request: web.Request, handler: Any) -> web.StreamResponse:
    """Rate limits (50011 + HTTP 429), signature checks for private paths, ApiError -> envelope."""
    path = request.path
    ex = ex_of(request)
    if path.startswith("/api/v5/"):
        endpoint = path[len("/api/v5") :]
        if ex.faults.rate_limited():
            return fail("50011", "Too Many Requests", 429)
        who = request.remote or "?"
        if endpoint.split("/")[1] in ("trade", "account"):
            err = rest_private.verify(request, await request.text())
            if err is not None:
                return err
            who = request.headers.get("OK-ACCESS-KEY", who)
        if ex.cfg.strict_limits and not ex.limiter.allow(endpoint, who):
            return fail("50011", "Too Many Requests", 429)
    try:
        return await handler(request)
    except ApiError as e:
        return fail(e.code, e.msg, e.status)


# ---------------------------------------------------------------- public
async def public_time(request: web.Request) -> web.Response:
    return ok([{"ts": str(ex_of(request).clock.now_ms())}])


async def instruments(request: web.Request) -> web.Response:
    q = request.query
    inst_type = q.get("instType")
    if not inst_type:
        raise ApiError("50014", "Parameter instType can not be empty.")
    ms = ex_of(request).markets.values()
    if inst_type != "SPOT":
        return ok([])
    inst = q.get("instId")
    return ok([views.instrument(m) for m in ms if not inst or m.inst_id == inst])


# ---------------------------------------------------------------- market
async def books(request: web.Request, full: bool = False) -> web.Response:
    m = market_of(request)
    sz = int_param(request.query, "sz", 1)
    assert sz is not None
    if sz <= 0 or sz > (5000 if full else 400):
        raise ApiError("51000", "Parameter sz error")
    row: dict = {"asks": m.levels(False, sz), "bids": m.levels(True, sz), "ts": str(m.book_ts)}
    if not full:
        row["seqId"] = m.pub_seq
    return ok([row])


async def books_full(request: web.Request) -> web.Response:
    return await books(request, full=True)


async def ticker(request: web.Request) -> web.Response:
    m = market_of(request)
    return ok([views.ticker(m, ex_of(request).clock.now_ms())])


async def tickers(request: web.Request) -> web.Response:
    ex = ex_of(request)
    if not request.query.get("instType"):
        raise ApiError("50014", "Parameter instType can not be empty.")
    now = ex.clock.now_ms()
    return ok([views.ticker(m, now) for m in ex.markets.values()])


async def trades(request: web.Request) -> web.Response:
    m = market_of(request)
    n = limit_param(request.query, 100, 500)
    return ok([views.trade_all(m, f) for f in reversed(m.trades[-n:])])


async def history_trades(request: web.Request) -> web.Response:
    """type 1: tradeId cursor; type 2: ts cursor. after = older than, before = newer than
    (both exclusive); newest first; `before` alone gives the newest page above the cursor."""
    m = market_of(request)
    q = request.query
    kind = q.get("type", "1") or "1"
    if kind not in ("1", "2"):
        raise ApiError("51000", "Parameter type error")
    n = limit_param(q, 100, 100)
    after, before = int_param(q, "after"), int_param(q, "before")
    ring = m.trades
    lo, hi = 0, len(ring)
    if ring:
        if kind == "1":
            first = ring[0][0]
            if after is not None:
                hi = max(0, min(hi, after - first))
            if before is not None:
                lo = max(lo, min(hi, before - first + 1))
        else:
            if after is not None:
                hi = bisect_left(ring, after, key=lambda t: t[4])
            if before is not None:
                lo = max(lo, bisect_right(ring, before, key=lambda t: t[4]))
    page = ring[max(lo, hi - n) : hi] if hi > lo else []
    return ok([views.trade_all(m, f) for f in reversed(page)])


async def candles(request: web.Request, history: bool = False) -> web.Response:
    m = market_of(request)
    q = request.query
    bar = q.get("bar", "1m") or "1m"
    if bar not in BARS:
        raise ApiError("51000", "Parameter bar error")
    n = limit_param(q, 100, 100 if history else 300)
    after, before = int_param(q, "after"), int_param(q, "before")
    series = m.candles[bar]
    series.roll(ex_of(request).clock.now_ms(), m.last_px)
    bars = list(series.bars)
    if not history:
        bars = bars[-1440:]
    current = bars[-1][0] if bars else None
    rows = []
    for b in reversed(bars):
        if after is not None and b[0] >= after:
            continue
        if before is not None and b[0] <= before:
            break
        rows.append(views.candle_row(m, b, "0" if b[0] == current else "1"))
        if len(rows) >= n:
            break
    return ok(rows)


async def history_candles(request: web.Request) -> web.Response:
    return await candles(request, history=True)


# ---------------------------------------------------------------- simulator
async def truth_trades(request: web.Request) -> web.Response:
    m = market_of(request)
    return ok([views.trade_all(m, f) for f in m.trades])


async def truth_tickers(request: web.Request) -> web.Response:
    """The last ticker sent per instrument (what a collector's ticker state must equal)."""
    ex = ex_of(request)
    inst = request.query.get("instId")
    return ok([t for i, t in sorted(ex.hub.last_ticker.items()) if not inst or i == inst])


async def truth_hostile(request: web.Request) -> web.Response:
    """Every hostile copy sent, in order: channel, instId, field, mutation, copies (connections
    it was written to), the original's identity. `?summary=1`: copies per channel and in all."""
    log = ex_of(request).faults.hostile_log
    if request.query.get("summary"):
        per: dict[str, int] = {}
        for r in log:
            per[r["channel"]] = per.get(r["channel"], 0) + r["copies"]
        return ok([{"frames": len(log), "copies": sum(per.values()), "perChannel": per}])
    return ok(log)


async def faults(request: web.Request) -> web.Response:
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        raise ApiError("51000", "body must be JSON") from None
    kind = body.get("kind") if isinstance(body, dict) else None
    if kind not in KINDS:
        raise ApiError("51000", f"kind must be one of {', '.join(KINDS)}")
    inst = body.get("instId")
    ex = ex_of(request)
    if inst is not None and inst not in ex.markets:
        raise ApiError("51001", "Instrument ID or Spread ID doesn't exist.")
    seconds = body.get("seconds")
    try:
        seconds = None if seconds is None else float(seconds)
    except (TypeError, ValueError):
        raise ApiError("51000", "seconds must be a number") from None
    try:
        result = apply_fault(ex, kind, inst, seconds, body)
    except ValueError as exc:  # a bad parameter of one kind (hostile's every, channels)
        raise ApiError("51000", str(exc)) from None
    ex.faults.history.append(
        {"kind": kind, "instId": inst, "seconds": seconds, "at": time.time(), **result}
    )
    return ok([{"kind": kind, "instId": inst or "", "seconds": seconds, **result}])


async def stats(request: web.Request) -> web.Response:
    ex = ex_of(request)
    conns = [
        {
            "connId": c.conn_id,
            "endpoint": c.endpoint,
            "loggedIn": c.logged_in,
            "subscriptions": len(c.subs) + len(c.private_args),
            "sent": c.sent,
        }
        for c in ex.hub.conns
    ]
    return ok(
        [
            {
                "connections": len(conns),
                "connectionsTotal": ex.stats.connections_total,
                "messagesSent": ex.stats.messages,
                "perChannel": dict(ex.stats.per_channel),
                "ticks": ex.ticks,
                "conns": conns,
                "faults": ex.faults.history,
            }
        ]
    )


def add_routes(app: web.Application) -> None:
    app.middlewares.append(envelope)
    r = app.router
    r.add_get("/api/v5/public/time", public_time)
    r.add_get("/api/v5/public/instruments", instruments)
    r.add_get("/api/v5/market/books", books)
    r.add_get("/api/v5/market/books-full", books_full)
    r.add_get("/api/v5/market/ticker", ticker)
    r.add_get("/api/v5/market/tickers", tickers)
    r.add_get("/api/v5/market/trades", trades)
    r.add_get("/api/v5/market/history-trades", history_trades)
    r.add_get("/api/v5/market/candles", candles)
    r.add_get("/api/v5/market/history-candles", history_candles)
    rest_private.add_routes(app)
    r.add_get("/sim/truth/trades", truth_trades)
    r.add_get("/sim/truth/tickers", truth_tickers)
    r.add_get("/sim/truth/hostile", truth_hostile)
    r.add_post("/sim/faults", faults)
    r.add_get("/sim/stats", stats)
