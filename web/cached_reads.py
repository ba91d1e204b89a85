"""The lean path's Redis reads through the latest-state cache (the I/O around web/state_cache.py).

`CachedReads.body(kind, instId, query, handler)` answers from `StateCache` when it may (the
tracking channel up and heard from within the lease), else runs the lean handler
(web/lean_state.py) over a `_Recorder`: the handler's own `hgetall`/`zrevrange` calls, each
key marked "being fetched" before its command is sent and read together with its PTTL (one
write, pipelined), so the body can be stored with the keys it came from and their TTL deadline.
While requests come, the channel is pinged every PING_EVERY_S (never awaited by a request); the
PING's reply moves the cache's freshness mark, so a channel that went silent stops being
trusted after LEASE_S even when no read fails.

All reads go through `client`, the tracking RespClient the cache listens to (web/app.py builds
it beside the untracked one of web/stores.py). Where no such client can be had (a rediss://
Redis, fakeredis in the unit tests) web/app.py builds no CachedReads and the lean path reads
as before.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from web.resp import RespClient, as_hash
from web.state_cache import PING_EVERY_S, CacheKey, StateCache, Ticket

Body = bytes | None
Handler = Callable[[Any, str, dict[bytes, bytes]], Awaitable[Body]]


class _Recorder:
    """What a lean handler reads from: the tracking client, each key marked and its TTL read."""

    __slots__ = ("cache", "client", "clock", "expires_at", "ticket")

    def __init__(self, cache: StateCache, client: RespClient, ticket: Ticket, clock: Any) -> None:
        self.cache, self.client, self.ticket, self.clock = cache, client, ticket, clock
        self.expires_at = float("inf")

    async def hgetall(self, key: str) -> dict[str, str]:
        return as_hash(await self._read(key, ("HGETALL", key)))

    async def zrevrange(self, key: str, start: int, stop: int) -> list[str]:
        members: list[str] = await self._read(key, ("ZREVRANGE", key, start, stop))
        return members

    async def _read(self, key: str, command: tuple[Any, ...]) -> Any:
        self.cache.mark(self.ticket, key)  # before the send: an invalidation from now cancels
        sent = self.clock()
        reply, pttl = await self.client.execute_many(command, ("PTTL", key))
        if pttl >= 0:  # the key expires: not served from memory past its Redis deadline
            self.expires_at = min(self.expires_at, sent + pttl / 1000)
        self.cache.channel_fresh(sent)  # a reply on the channel: invalidations up to `sent` seen
        return reply


def cached_reads(state_async: Any, max_entries: int) -> CachedReads | None:
    """The cache over a tracking twin of the lean path's client, or None: the cache is off
    (`max_entries` 0) or no push channel can be had (redis.asyncio for rediss://, fakeredis)."""
    if max_entries <= 0 or not isinstance(state_async, RespClient):
        return None
    cache = StateCache(max_entries)
    return CachedReads(cache, state_async.twin(tracking=cache))


class CachedReads:
    def __init__(
        self,
        cache: StateCache,
        client: RespClient,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cache, self.client, self.clock = cache, client, clock
        self._pinged_at = float("-inf")
        self._ping: asyncio.Task[None] | None = None

    async def body(self, kind: str, inst_id: str, query: bytes, handler: Handler, q: Any) -> Body:
        now = self.clock()
        cache = self.cache
        if now - self._pinged_at >= PING_EVERY_S and self._ping is None:
            self._start_ping(now)
        ck: CacheKey = (kind, inst_id, query)
        body = cache.get(ck, now)
        if body is not None:
            return body
        ticket = cache.begin()
        if ticket is None:  # channel down: straight from Redis (this read reconnects it)
            return await handler(self.client, inst_id, q)
        recorder = _Recorder(cache, self.client, ticket, self.clock)
        try:
            body = await handler(recorder, inst_id, q)
            if body is not None:
                cache.put(ticket, ck, body, recorder.expires_at)
        finally:
            cache.end(ticket)
        return body

    def _start_ping(self, now: float) -> None:
        self._pinged_at = now
        self._ping = asyncio.get_running_loop().create_task(self._ping_once(now))

    async def _ping_once(self, sent: float) -> None:
        try:
            await self.client.execute("PING")  # a late reply drops the connection (resp.py)
            self.cache.channel_fresh(sent)
        except Exception:  # noqa: BLE001 - the channel's loss reached the cache already
            pass
        finally:
            self._ping = None
