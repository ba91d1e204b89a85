"""A lean asyncio Redis client for the latest-state reads: one pipelined connection, hiredis.

The latest-state endpoints (web/lean_state.py, web/routes_state.py) send one command a request.
redis.asyncio spends 80-150 us of CPU on each (a connection pool with its lock, a task per write
for the socket timeout, its command layers) where the round trip itself is ~30 us of Python;
bench/api.py's "web cpu" is the sum. `RespClient` is the short version: one connection per
event loop, commands written straight to the transport and their replies matched in order
(Redis answers in order, so concurrent requests share the connection, pipelined, without a pool),
parsed by hiredis (the C parser redis-py itself uses), strings decoded as UTF-8 like
`decode_responses=True`. Only what the endpoints need: `hgetall` and `zrevrange`.

Failure rules, as redis-py's: every call has `timeout_s` (a reply later than that is a
redis.TimeoutError and the connection is dropped, since Redis is then in doubt), a lost
connection fails the calls waiting on it with redis.ConnectionError, and the next call connects
again. Error messages name the host, never the password. Plain TCP and unix sockets; a rediss://
(TLS) URL keeps redis.asyncio (web/stores.py), so there is one TLS code path, redis-py's.

Tracking (`tracking=` a `TrackingListener`, for web/state_cache.py): each connection is set up
with `HELLO 3` and `CLIENT TRACKING ON`, so Redis pushes an invalidation on this same connection
whenever a key this connection read changes (RESP3 pushes travel in order with the replies).
Pushes go to the listener as they are parsed, before any reply after them is handed out; the
listener hears `channel_up` once tracking is confirmed and `channel_down` the moment the
connection is known lost (before any waiting call fails). A server that refuses HELLO 3 or
CLIENT TRACKING keeps the connection untracked: the listener never hears `channel_up`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any, Protocol

import hiredis
import redis
from redis.connection import parse_url

log = logging.getLogger("web.resp")


class TrackingListener(Protocol):
    """What a tracking connection reports (web/state_cache.py's StateCache implements it)."""

    def channel_up(self, as_of: float) -> None: ...  # tracking on since `as_of` (monotonic)
    def channel_down(self) -> None: ...  # the connection is gone: its invalidations with it
    def invalidate(self, keys: list[str] | None) -> None: ...  # None: every key (FLUSHALL...)


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        # invalid UTF-8 (never written by the workers) becomes U+FFFD rather than a reader
        # left mid-reply: the body stays valid JSON and the connection in step
        self.reader = hiredis.Reader(encoding="utf-8", errors="replace")
        self.waiting: deque[asyncio.Future[Any]] = deque()
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self.listener: TrackingListener | None = None  # set once CLIENT TRACKING ON succeeded

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        try:
            while (reply := self.reader.gets()) is not False:
                if type(reply) is hiredis.PushNotification:
                    self._push(reply)  # in stream order: before any reply after it
                    continue
                if not self.waiting:
                    raise hiredis.ProtocolError("a reply nobody asked for")
                future = self.waiting.popleft()
                if not future.done():  # a caller that timed out has left
                    future.set_result(reply)
        except hiredis.ProtocolError:
            self.close(redis.ConnectionError("Redis sent a malformed reply"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(redis.ConnectionError("Redis closed the connection"))

    def _push(self, push: list[Any]) -> None:
        if self.listener is not None and len(push) == 2 and push[0] == "invalidate":
            self.listener.invalidate(push[1])

    def fail(self, error: Exception) -> None:
        self.lost = True
        listener, self.listener = self.listener, None
        if listener is not None:  # first, so no caller resumes to a cache still taken as live
            listener.channel_down()
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_exception(error)

    def close(self, error: Exception) -> None:
        self.fail(error)
        if self.transport is not None:
            self.transport.abort()

    def send(self, args: tuple[Any, ...]) -> asyncio.Future[Any]:
        future = asyncio.get_running_loop().create_future()
        self.waiting.append(future)
        assert self.transport is not None
        self.transport.write(_pack(args))
        return future

    def send_many(self, commands: tuple[tuple[Any, ...], ...]) -> list[asyncio.Future[Any]]:
        """Several commands in one write (one syscall), their futures in order."""
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in commands]
        self.waiting.extend(futures)
        assert self.transport is not None
        self.transport.write(b"".join(_pack(args) for args in commands))
        return futures


def as_hash(reply: Any) -> dict[str, str]:
    """An HGETALL reply as a dict: a RESP3 map already is one, RESP2 gives a flat list."""
    if type(reply) is dict:
        return reply
    return dict(zip(reply[::2], reply[1::2], strict=True))


def _pack(args: tuple[Any, ...]) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        raw = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    return b"".join(parts)


_URL_PARTS = frozenset({"host", "port", "path", "db", "username", "password"})


class RespClient:
    """`await client.hgetall(key)`, `await client.zrevrange(key, 0, 9)` on one connection."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 6379,
        *,
        path: str | None = None,
        db: int = 0,
        username: str | None = None,
        password: str | None = None,
        timeout_s: float = 5.0,
        tracking: TrackingListener | None = None,
    ) -> None:
        self.host, self.port, self.path, self.db = host, port, path, db
        self.tracking = tracking
        self._username, self._password = username, password
        self.timeout_s = timeout_s
        self._proto: _Protocol | None = None
        self._connecting: asyncio.Task[_Protocol] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:  # never the password
        return f"RespClient({self._where()}, db={self.db})"

    @classmethod
    def from_url(
        cls, url: str, timeout_s: float, tracking: TrackingListener | None = None
    ) -> RespClient:
        kw = parse_url(url)
        if kw.get("connection_class") not in (None, redis.UnixDomainSocketConnection):
            raise ValueError("RespClient speaks plain TCP or a unix socket, not TLS")
        # the URL's other options (timeouts, client name...) are redis-py's; ours is timeout_s
        parts = {k: v for k, v in kw.items() if k in _URL_PARTS}
        return cls(timeout_s=timeout_s, tracking=tracking, **parts)

    @classmethod
    def like(cls, client: redis.Redis) -> RespClient:
        """On the same server, database and credentials as a sync redis-py client."""
        kw = client.connection_pool.connection_kwargs
        return cls(
            kw.get("host", "127.0.0.1"),
            kw.get("port", 6379),
            path=kw.get("path"),
            db=kw.get("db", 0),
            username=kw.get("username"),
            password=kw.get("password"),
            timeout_s=kw.get("socket_timeout") or 5.0,
        )

    def twin(self, tracking: TrackingListener | None = None) -> RespClient:
        """A client of its own (its own connection) on the same server, database, credentials."""
        return RespClient(
            self.host,
            self.port,
            path=self.path,
            db=self.db,
            username=self._username,
            password=self._password,
            timeout_s=self.timeout_s,
            tracking=tracking,
        )

    async def hgetall(self, key: str) -> dict[str, str]:
        return as_hash(await self.execute("HGETALL", key))

    async def zrevrange(self, key: str, start: int, stop: int) -> list[str]:
        members: list[str] = await self.execute("ZREVRANGE", key, start, stop)
        return members

    async def execute(self, *args: Any) -> Any:
        proto = await self._connection()
        reply = await self._await(proto, proto.send(args))
        if isinstance(reply, hiredis.ReplyError):
            raise redis.ResponseError(str(reply))
        return reply

    async def execute_many(self, *commands: tuple[Any, ...]) -> list[Any]:
        """The replies of `commands`, sent in one write (pipelined). An error reply raises
        redis.ResponseError after every reply has arrived (the connection stays in step)."""
        proto = await self._connection()
        replies = await self._await(proto, asyncio.gather(*proto.send_many(commands)))
        for reply in replies:
            if isinstance(reply, hiredis.ReplyError):
                raise redis.ResponseError(str(reply))
        return list(replies)

    async def aclose(self) -> None:
        if self._proto is not None:
            self._proto.close(redis.ConnectionError("client closed"))
            self._proto = None

    async def _await(self, proto: _Protocol, future: asyncio.Future[Any]) -> Any:
        try:
            async with asyncio.timeout(self.timeout_s):
                return await future
        except TimeoutError:
            proto.close(redis.TimeoutError(f"no reply from Redis at {self._where()}"))
            raise redis.TimeoutError(
                f"no reply from Redis at {self._where()} within {self.timeout_s} s"
            ) from None

    async def _connection(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        proto = self._proto
        if proto is not None and not proto.lost and self._loop is loop:
            return proto
        if self._loop is not loop:  # a new event loop (tests): the old connection is its
            if proto is not None and proto.listener is not None:  # its invalidations are gone
                listener, proto.listener = proto.listener, None
                listener.channel_down()
            self._proto, self._connecting, self._loop = None, None, loop
        if self._connecting is None:  # one connect for all the callers arriving meanwhile
            self._connecting = loop.create_task(self._connect())
            self._connecting.add_done_callback(self._connected)
        return await asyncio.shield(self._connecting)

    def _connected(self, task: asyncio.Task[_Protocol]) -> None:
        if self._connecting is task:
            self._connecting = None
        if not task.cancelled() and task.exception() is None:
            self._proto = task.result()

    async def _connect(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.timeout_s):
                if self.path:
                    _, proto = await loop.create_unix_connection(_Protocol, self.path)
                else:
                    _, proto = await loop.create_connection(_Protocol, self.host, self.port)
        except TimeoutError:
            raise redis.TimeoutError(f"connecting to Redis at {self._where()} timed out") from None
        except OSError as exc:
            raise redis.ConnectionError(
                f"cannot connect to Redis at {self._where()}: {exc.strerror or type(exc).__name__}"
            ) from None
        if self._password:
            user = (self._username,) if self._username else ()
            await self._setup(proto, "AUTH", *user, self._password)
        if self.db:
            await self._setup(proto, "SELECT", self.db)
        if self.tracking is not None:
            await self._track(proto, self.tracking)
        return proto

    async def _track(self, proto: _Protocol, listener: TrackingListener) -> None:
        """RESP3 and CLIENT TRACKING ON, then the listener hears the channel is up. A server
        that refuses either (Redis < 6, an ACL without CLIENT) leaves this connection untracked."""
        for args in (("HELLO", 3), ("CLIENT", "TRACKING", "ON")):
            at = time.monotonic()
            reply = await self._await(proto, proto.send(args))
            if isinstance(reply, hiredis.ReplyError):
                log.warning(
                    "Redis at %s refused %s: the latest-state cache stays off on this "
                    "connection (%s)",
                    self._where(),
                    " ".join(map(str, args)),
                    str(reply).split(" ", 1)[0],
                )
                return
        if not proto.lost:
            proto.listener = listener
            # every invalidation of a write after the CLIENT TRACKING reply comes on this
            # connection: the channel is known up since the command was sent
            listener.channel_up(at)

    async def _setup(self, proto: _Protocol, *args: Any) -> None:
        reply = await self._await(proto, proto.send(args))
        if isinstance(reply, hiredis.ReplyError):
            proto.close(redis.ConnectionError("setup refused"))
            raise redis.AuthenticationError(f"Redis at {self._where()} refused {args[0]}")

    def _where(self) -> str:
        return self.path or f"{self.host}:{self.port}"
