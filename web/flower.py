"""Flower inside the one `web` process: a supervised child on a loopback port, proxied under
/flower on $PORT (Heroku routes only `web`, so Flower cannot have a port of its own).

Flower is a Tornado application with its own event loop and state (the task list it builds from
the workers' events); running it as a child process (`celery -A tasks flower --url_prefix=flower
--address=127.0.0.1`) keeps it exactly as the previous `web` process ran it, configuration
(flowerconfig.py: its authentication, bounded task list, redacted logs) included, and keeps its
loop and memory out of the API's. The proxy streams requests and responses through httpx without
buffering them, and leaves Flower's own authentication in place: Flower checks the same
credentials the API accepts for Basic (a Bearer token does not open Flower).

If the child exits, it is restarted after a growing pause (1 s, 2 s, ... 30 s); health reports
it `restarting` meanwhile. After MAX_RESTARTS exits within RESTART_WINDOW_S the web process
gives up and exits with status 1 (`give_up`), so the platform restarts the whole dyno instead of
leaving a Flower that never comes up.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import httpx
from fastapi import APIRouter, Request
from starlette.background import BackgroundTask
from starlette.responses import Response, StreamingResponse

from web.responses import Json

log = logging.getLogger("web.flower")
logging.getLogger("httpx").setLevel(logging.WARNING)  # not one INFO line per proxied request

PREFIX = "flower"
MAX_RESTARTS = 5
RESTART_WINDOW_S = 120.0
BACKOFF_CAP_S = 30.0
READY_POLL_S = 0.2
# RFC 9110 hop-by-hop headers: never forwarded by a proxy
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
    }
)


def free_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def flower_command(port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "tasks",
        "flower",
        "--address=127.0.0.1",
        f"--port={port}",
        f"--url_prefix={PREFIX}",
        "--conf=flowerconfig.py",
    ]


class FlowerChild:
    """Runs and supervises the Flower child; `status()` for health, `client` for the proxy."""

    def __init__(
        self,
        port: int = 0,
        command: Callable[[int], Sequence[str]] = flower_command,
        give_up: Callable[[], None] | None = None,
        max_restarts: int = MAX_RESTARTS,
        first_pause_s: float = 1.0,
        shutting_down: Callable[[], bool] = lambda: False,
    ) -> None:
        self.port = port or free_loopback_port()
        self.command = command
        self.give_up = give_up
        self.max_restarts = max_restarts
        self.first_pause_s = first_pause_s
        # the platform's SIGTERM reaches the child too: its exit then is no crash
        self.shutting_down = shutting_down
        self.state = "stopped"  # starting | up | restarting | down | stopped
        self.restarts = 0
        self.last_exit: int | None = None
        self.proc: asyncio.subprocess.Process | None = None
        self._exits: deque[float] = deque()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.client = httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{self.port}", timeout=httpx.Timeout(30.0, connect=2.0)
        )

    def status(self) -> dict[str, Any]:
        pid = self.proc.pid if self.proc is not None else None
        return {
            "state": self.state,
            "restarts": self.restarts,
            "pid": pid,
            "last_exit": self.last_exit,
        }

    async def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._supervise(), name="flower-supervisor")

    async def _spawn(self) -> asyncio.subprocess.Process:
        self.state = "starting"
        proc = await asyncio.create_subprocess_exec(*self.command(self.port))
        self.proc = proc
        log.info("flower started (pid %s) on 127.0.0.1:%d under /%s", proc.pid, self.port, PREFIX)
        return proc

    async def _wait_ready(self, proc: asyncio.subprocess.Process) -> None:
        while proc.returncode is None and not self._stopping:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                self.state = "up"
                return
            except OSError:
                await asyncio.sleep(READY_POLL_S)

    async def _supervise(self) -> None:
        pause = self.first_pause_s
        while not self._stopping:
            proc = await self._spawn()
            ready = asyncio.create_task(self._wait_ready(proc))
            code = await proc.wait()
            ready.cancel()
            if self._stopping or self.shutting_down():
                self.state, self.last_exit = "stopped", code
                break
            self.last_exit, self.restarts = code, self.restarts + 1
            now = time.monotonic()
            self._exits.append(now)
            while self._exits and now - self._exits[0] > RESTART_WINDOW_S:
                self._exits.popleft()
            if len(self._exits) > self.max_restarts:
                self.state = "down"
                log.error(
                    "flower exited %d times in %.0f s (last status %s): giving up",
                    len(self._exits),
                    RESTART_WINDOW_S,
                    code,
                )
                if self.give_up is not None:
                    self.give_up()
                return
            self.state = "restarting"
            log.warning("flower exited with status %s; restarting in %.0f s", code, pause)
            await asyncio.sleep(pause)
            pause = min(pause * 2, BACKOFF_CAP_S)

    async def stop(self) -> None:
        self._stopping = True
        proc = self.proc
        if proc is not None and proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), timeout=10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if self._task is not None:
            self._task.cancel()
        self.state = "stopped"
        await self.client.aclose()


def _forward_headers(headers: Any) -> list[tuple[str, str]]:
    return [(k, v) for k, v in headers.items() if k.lower() not in HOP_BY_HOP]


def proxy_router(flower: FlowerChild) -> APIRouter:
    """/flower and /flower/... to the child, streamed both ways."""
    router = APIRouter(include_in_schema=False)
    methods = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]

    async def proxy(request: Request) -> Response:
        if flower.state != "up":
            return Json({"error": f"flower is {flower.state}"}, status_code=503)
        path = request.url.path
        query = request.url.query
        upstream = flower.client.build_request(
            request.method,
            path + (f"?{query}" if query else ""),
            headers=_forward_headers(request.headers)
            + [("x-forwarded-proto", request.url.scheme), ("x-forwarded-host", request.url.netloc)],
            content=request.stream(),
        )
        try:
            resp = await flower.client.send(upstream, stream=True)
        except httpx.HTTPError as exc:
            log.warning("flower proxy: %s", type(exc).__name__)
            return Json({"error": "flower is not answering"}, status_code=502)
        out = StreamingResponse(
            resp.aiter_raw(), status_code=resp.status_code, background=BackgroundTask(resp.aclose)
        )
        # raw: repeated headers (Set-Cookie) stay repeated; bytes pass unchanged, so do
        # Content-Length and Content-Encoding
        out.raw_headers = [
            (k.encode("latin-1"), v.encode("latin-1"))
            for k, v in resp.headers.multi_items()
            if k.lower() not in HOP_BY_HOP
        ]
        return out

    router.add_api_route(f"/{PREFIX}", proxy, methods=methods)
    router.add_api_route(f"/{PREFIX}/{{path:path}}", proxy, methods=methods)
    return router
