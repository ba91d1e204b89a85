"""Exchange (all state, one asyncio loop) and OkxSim (runs it in a background thread)."""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from typing import Any

from aiohttp import web

from . import rest, ws
from .account import Account
from .account_pub import AccountPublisher
from .appkey import EXCHANGE
from .clock import SimClock
from .config import SimConfig
from .conn import Conn
from .faults import FaultState
from .hub import Hub
from .instruments import spec_for
from .market import Market
from .ratelimit import RateLimiter
from .stats import Stats

log = logging.getLogger("okxsim")


class Exchange:
    """Markets, connections, account and faults; every method runs on the sim's event loop."""

    def __init__(self, cfg: SimConfig) -> None:
        self.cfg = cfg
        self.clock = SimClock(cfg.clock_speed)
        self.stats = Stats()
        self.faults = FaultState()
        self.markets = {
            i: Market(spec_for(i), cfg.seed, cfg.trade_history) for i in cfg.instruments
        }
        now = self.clock.now_ms()
        for m in self.markets.values():
            m.book_ts = now
        self.hub = Hub(cfg, self.markets, self.stats, self.faults)
        self.limiter = RateLimiter()
        self.account = Account(cfg, self.markets, self.clock)
        self.account_pub = AccountPublisher(self)
        self._conn_ids = itertools.count(1)
        self._tasks: list[asyncio.Task] = []
        self.ticks = 0

    def new_conn_id(self) -> str:
        return f"{next(self._conn_ids) * 2654435761 % (1 << 32):08x}"

    def close_later(self, conn: Conn, code: int, message: str) -> None:
        conn.closed = True  # nothing more is pushed

        async def _close() -> None:
            try:
                await conn.ws.close(code=code, message=message.encode())
            except Exception:  # noqa: BLE001 - the peer may be gone already
                conn.abort()

        self._tasks.append(asyncio.get_running_loop().create_task(_close()))
        self._tasks = [t for t in self._tasks if not t.done()]

    # ------------------------------------------------------------ loops
    def step(
        self, t0: int, t1: int, markets: list[Market] | None = None, first: bool = True
    ) -> None:
        """One market tick over (t0, t1] of `markets` (default: all): bot, market events,
        publishing. `first`: this is the tick's first phase (the bot acts once per tick)."""
        self.hub.cork()
        try:
            self._step(t0, t1, markets, first)
        finally:
            self.hub.uncork()

    def _step(self, t0: int, t1: int, markets: list[Market] | None, first: bool) -> None:
        cfg = self.cfg
        lam = cfg.base_events_per_tick * cfg.rate * cfg.tick_ms * cfg.clock_speed / 100
        now_mono = time.monotonic()
        if first:
            self.ticks += 1
            self.account.before_tick(self.ticks, t0, t1, now_mono)
        for m in self.markets.values() if markets is None else markets:
            if m.paused_until > now_mono:
                n = 0
            else:
                n = int(lam) + (1 if m.rng.random() < lam - int(lam) else 0)
            m.step(t0, t1, n)
            out = m.drain()
            if self.account is not None and out.fills:
                self.account.on_market_fills(m, out.fills)
            self.hub.publish_tick(m, out, t1)
        if first and t1 // 1000 != t0 // 1000:  # phase 0's windows cross each second once
            self.hub.flush_candles(t1)
        if self.account_pub is not None:
            self.account_pub.flush(t1)

    async def market_loop(self) -> None:
        """Every tick_ms, step the markets. With `stagger`, the tick is cut into one phase per
        instrument: each instrument still covers tick_ms of market time per step, at its own
        offset, so pushes arrive spread over the tick as from OKX rather than in one burst."""
        loop = asyncio.get_running_loop()
        markets = list(self.markets.values())
        phases = len(markets) if self.cfg.stagger else 1
        tick = self.cfg.tick_ms / 1000 / phases
        next_t = loop.time()
        now0 = self.clock.now_ms()
        last = [now0] * phases  # per phase: the end of its previous step
        phase = 0
        while True:
            next_t += tick
            delay = next_t - loop.time()
            if delay < -1.0:
                next_t = loop.time()
            await asyncio.sleep(max(0.0, delay))
            now = self.clock.now_ms()
            if now > last[phase]:
                try:
                    self.step(
                        last[phase],
                        now,
                        markets[phase::phases] if phases > 1 else None,
                        first=phase == 0,
                    )
                except Exception:  # noqa: BLE001 - one bad tick must not stop the market
                    log.exception("market step failed")
                last[phase] = now
            phase = (phase + 1) % phases

    async def watchdog_loop(self) -> None:
        """Close idle connections with 4004, as OKX does after 30 s."""
        idle = self.cfg.idle_timeout
        while True:
            await asyncio.sleep(min(1.0, idle / 4))
            now = time.monotonic()
            for c in list(self.hub.conns):
                if c.closed or c.stalled():
                    continue
                quiet_unsub = c.unsubscribed_since is not None and now - c.unsubscribed_since > idle
                if quiet_unsub or now - c.last_sent > idle:
                    self.close_later(c, 4004, "No data received in 30s.")

    async def on_startup(self, app: web.Application) -> None:
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self.market_loop()))
        self._tasks.append(loop.create_task(self.watchdog_loop()))

    async def on_cleanup(self, app: web.Application) -> None:
        for t in self._tasks:
            t.cancel()
        for c in list(self.hub.conns):
            c.abort()

    def make_app(self) -> web.Application:
        app = web.Application()
        app[EXCHANGE] = self
        app.router.add_get("/ws/v5/{endpoint}", ws.handle)
        rest.add_routes(app)
        app.on_startup.append(self.on_startup)
        app.on_cleanup.append(self.on_cleanup)
        return app


class OkxSim:
    """The simulator in a background thread: ``with OkxSim(SimConfig(port=0)) as sim: ...``."""

    def __init__(self, config: SimConfig | None = None, **overrides: Any) -> None:
        cfg = config or SimConfig(port=0)
        if overrides:
            from dataclasses import replace

            cfg = replace(cfg, **overrides)
        self.config = cfg
        self.exchange: Exchange | None = None
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def ws_url(self) -> str:
        return f"ws://{self.config.host}:{self.port}"

    @property
    def rest_url(self) -> str:
        return f"http://{self.config.host}:{self.port}"

    def start(self) -> OkxSim:
        self._thread = threading.Thread(target=self._run, name="okxsim", daemon=True)
        self._thread.start()
        if not self._ready.wait(15):
            raise RuntimeError("okxsim did not start within 15 s")
        if self._error is not None:
            raise RuntimeError(f"okxsim failed to start: {self._error!r}") from self._error
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._start_async())
        except BaseException as exc:  # noqa: BLE001 - reported to start()
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        loop.run_forever()
        loop.run_until_complete(self._stop_async())
        loop.close()

    async def _start_async(self) -> None:
        self.exchange = Exchange(self.config)
        self._runner = web.AppRunner(
            self.exchange.make_app(), handle_signals=False, access_log=None, shutdown_timeout=1.0
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port, reuse_address=True)
        await site.start()
        server = site._server
        assert server is not None and server.sockets
        self.port = server.sockets[0].getsockname()[1]

    async def _stop_async(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def call(self, fn: Any, *args: Any, timeout: float = 10) -> Any:
        """Run fn(exchange, *args) on the sim's loop and return its result (for tests)."""
        assert self._loop is not None and self.exchange is not None

        async def _c() -> Any:
            return fn(self.exchange, *args)

        return asyncio.run_coroutine_threadsafe(_c(), self._loop).result(timeout)

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._loop = None

    def __enter__(self) -> OkxSim:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
