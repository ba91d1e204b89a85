"""Transport-only helpers for tests and benchmarks: a tiny asyncio WS client and REST getter.

They move bytes and nothing else: no OKX logic (signing, checksums, books) lives here, so tests
keep their own independent implementations of those.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson


class WsClient:
    """``async with WsClient(url) as c: await c.send({...}); msg = await c.recv()``."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.session: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None

    async def __aenter__(self) -> WsClient:
        self.session = aiohttp.ClientSession()
        self.ws = await self.session.ws_connect(
            self.url, autoping=True, heartbeat=None, max_msg_size=0
        )
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.session is not None:
            await self.session.close()

    async def send(self, obj: Any) -> None:
        assert self.ws is not None
        await self.ws.send_str(obj if isinstance(obj, str) else orjson.dumps(obj).decode())

    async def recv_raw(self, timeout: float = 5.0) -> aiohttp.WSMessage:
        assert self.ws is not None
        return await self.ws.receive(timeout=timeout)

    async def recv(self, timeout: float = 5.0) -> Any:
        """Next text frame parsed as JSON (or the raw text when not JSON); raises on close."""
        msg = await self.recv_raw(timeout)
        if msg.type == aiohttp.WSMsgType.TEXT:
            try:
                return orjson.loads(msg.data)
            except orjson.JSONDecodeError:
                return msg.data
        raise ConnectionError(f"socket closed or non-text frame: {msg.type} {msg.data!r}")

    async def recv_until(
        self, pred: Callable[[Any], bool], timeout: float = 5.0, keep: list | None = None
    ) -> Any:
        """Read until pred(msg) is true (deadline: timeout seconds); other frames go to keep."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("condition not met before the deadline")
            msg = await self.recv(left)
            if pred(msg):
                return msg
            if keep is not None:
                keep.append(msg)


async def rest_get(base: str, path: str, headers: dict | None = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as s:
        async with s.get(base + path, headers=headers or {}) as r:
            return r.status, orjson.loads(await r.read())


async def rest_post(
    base: str, path: str, body: Any, headers: dict | None = None
) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as s:
        async with s.post(base + path, data=orjson.dumps(body), headers=headers or {}) as r:
            return r.status, orjson.loads(await r.read())


def event(name: str) -> Callable[[Any], bool]:
    return lambda m: isinstance(m, dict) and m.get("event") == name


def channel(name: str) -> Callable[[Any], bool]:
    return lambda m: isinstance(m, dict) and "data" in m and m.get("arg", {}).get("channel") == name
