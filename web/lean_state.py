"""The lean path of the latest-state endpoints: answered before FastAPI's routing.

ticker, book, latest trades, candle and latest VWAP are the read API's hot path (bench/api.py,
issue #17's target: p99 <= 5 ms, <= 2x a direct Redis read). FastAPI's routing, parameter
solving and Response objects cost about as much CPU again as the Redis round trip
(docs/read-api.md), so `LeanState`, an ASGI middleware behind `AuthGate` (web/auth.py), answers
these GETs itself: match the path by string operations, one Redis command on the asyncio
client, the body from web/state_bodies.py (the same function the FastAPI route calls), two
ASGI messages with ready headers.

It answers only the plain success: a request it does not recognise in its canonical form (any
other query parameter, a value that is not a plain token or number, a stale instrument list is
refreshed first, then an unknown instId; a missing state key) is passed on untouched to the
FastAPI routes of web/routes_state.py, which answer it as before. So every refusal, every
message and every counter stay the FastAPI route's by construction, and the endpoints stay in
/openapi.json. An exception (Redis down) propagates to the app's error handler as from a route.

With `reads` (web/cached_reads.py, WEB_STATE_CACHE_MAX > 0) the same handlers run through the
latest-state cache: a body Redis has not invalidated since it was read is answered from memory,
without a Redis round trip; everything else is as above.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool

from core import keys
from web import state_bodies as bodies
from web.cached_reads import CachedReads
from web.params import BARS, DEFAULT_LIMIT, INST_ID_PATTERN, MAX_BOOK_DEPTH, MAX_LIMIT
from web.stores import Stores

PREFIX = "/api/v1/"
_TOKEN = re.compile(rb"^[A-Za-z0-9]{1,8}$")  # a query value taken as is (no escapes, no blanks)
_NUMBER = re.compile(rb"^[1-9][0-9]{0,3}$")  # an int param in canonical form
_JSON = (b"content-type", b"application/json")

# What each endpoint accepts in its query (anything else goes to FastAPI)
_QUERY = {
    "ticker": frozenset(),
    "book": frozenset({b"depth"}),
    "trades": frozenset({b"limit"}),
    "candle": frozenset({b"bar"}),
    "vwap": frozenset(),  # ?ts= is the as-of read from MongoDB: FastAPI's route
}

Body = bytes | None  # None: not answered here, FastAPI's route answers
Handler = Callable[[Any, str, dict[bytes, bytes]], Awaitable[Body]]


def match(path: str, query: bytes) -> tuple[str, str, dict[bytes, bytes]] | None:
    """(endpoint, instId, query) for a latest-state path in canonical form, else None."""
    if not path.startswith(PREFIX):
        return None
    kind, _, tail = path[len(PREFIX) :].partition("/")
    if kind == "trades":
        inst_id, _, rest = tail.partition("/")
        if rest != "latest":
            return None
    elif kind in _QUERY:
        inst_id = tail
    else:
        return None
    if not inst_id or "/" in inst_id or not INST_ID_PATTERN.match(inst_id):
        return None
    found = _query(query, _QUERY[kind])
    return None if found is None else (kind, inst_id, found)


def _query(raw: bytes, allowed: frozenset[bytes]) -> dict[bytes, bytes] | None:
    if not raw:
        return {}
    found: dict[bytes, bytes] = {}
    for part in raw.split(b"&"):
        name, sep, value = part.partition(b"=")
        if not sep or name not in allowed or name in found or not _TOKEN.match(value):
            return None
        found[name] = value
    return found


def _number(raw: bytes | None, default: int, top: int) -> int | None:
    if raw is None:
        return default
    if not _NUMBER.match(raw):
        return None
    n = int(raw)
    return n if n <= top else None


async def _ticker(r: Any, inst_id: str, q: dict[bytes, bytes]) -> Body:
    h = await r.hgetall(keys.ticker(inst_id))
    return bodies.hash_body(h) if h else None


async def _book(r: Any, inst_id: str, q: dict[bytes, bytes]) -> Body:
    depth = _number(q.get(b"depth"), MAX_BOOK_DEPTH, MAX_BOOK_DEPTH)
    if depth is None:
        return None
    h = await r.hgetall(keys.books5(inst_id))
    if h:
        return bodies.books5_body(inst_id, h, depth)
    h = await r.hgetall(keys.book(inst_id))
    return bodies.top1_body(inst_id, h) if h else None


async def _trades(r: Any, inst_id: str, q: dict[bytes, bytes]) -> Body:
    limit = _number(q.get(b"limit"), DEFAULT_LIMIT, MAX_LIMIT)
    if limit is None:
        return None
    return bodies.trades_body(await r.zrevrange(keys.trades(inst_id), 0, limit - 1))


async def _candle(r: Any, inst_id: str, q: dict[bytes, bytes]) -> Body:
    bar = q.get(b"bar", b"1m").decode()
    if bar not in BARS:
        return None
    h = await r.hgetall(keys.candle(inst_id, bar))
    return bodies.hash_body(h) if h else None


async def _vwap(r: Any, inst_id: str, q: dict[bytes, bytes]) -> Body:
    h = await r.hgetall(keys.vwap_key(inst_id))
    return bodies.vwap_body(h) if h else None


HANDLERS: dict[str, Handler] = {
    "ticker": _ticker,
    "book": _book,
    "trades": _trades,
    "candle": _candle,
    "vwap": _vwap,
}


class LeanState:
    """ASGI middleware: answers the latest-state GETs it recognises, passes on the rest."""

    def __init__(
        self, app: Any, stores: Stores, counters: Any, reads: CachedReads | None = None
    ) -> None:
        self.app, self.stores, self.counters, self.reads = app, stores, counters, reads

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and not scope.get("root_path"):
            raw = scope.get("query_string", b"")
            found = match(scope["path"], raw)
            if found is not None and await self._answer(found, raw, send):
                return
        await self.app(scope, receive, send)

    async def _answer(
        self, found: tuple[str, str, dict[bytes, bytes]], raw_query: bytes, send: Any
    ) -> bool:
        kind, inst_id, query = found
        instruments = self.stores.instruments
        if instruments.stale(inst_id):
            await run_in_threadpool(instruments.refresh)  # SCANs: never on the event loop
        if inst_id not in instruments.known():
            return False  # FastAPI's route answers the 404
        if self.reads is None:
            body = await HANDLERS[kind](self.stores.state_async, inst_id, query)
        else:
            body = await self.reads.body(kind, inst_id, raw_query, HANDLERS[kind], query)
        if body is None:
            return False
        headers = [(b"content-length", str(len(body)).encode()), _JSON]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        self.counters["lean_answered"] += 1
        return True
