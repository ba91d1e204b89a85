"""okxsim for the benchmarks: the same exchange, plus two bench-only control routes.

    python -m bench.sim_server --port P [--rate R] [--trade-history N] [okxsim flags...]

POST /bench/rate {"rate": R}  changes the market event rate live, so a benchmark can step the load
                              up without restarting the exchange (a restart would drop every
                              connection and start the feeder's recovery instead of measuring it).
GET  /bench/clock             {"offset": C}: okxsim's clock is C + CLOCK_MONOTONIC (seconds). The
                              bench reads CLOCK_MONOTONIC too, so it can express "now" on okxsim's
                              clock exactly (no wall-clock drift, no round-trip error) and compare
                              it with the exchange `ts` okxsim stamps on every frame.
GET  /bench/sent?since=T      {"sent": [[channel, instId, ts, t], ...]}: when (CLOCK_MONOTONIC, s)
                              each tickers and books5 frame was written to the subscribers'
                              sockets, for frames written after T. The exchange `ts` is floored
                              to the millisecond and stamped when the tick starts, so `now - ts`
                              overstates latency by 0.5 ms on average; this is the exact send time.
                              Trades frames too, as ["trades", instId, tradeId, t].

okxsim itself is not changed: the routes are added to its application from outside.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import replace

import orjson
from aiohttp import web

from okxsim.__main__ import parse_args
from okxsim.appkey import EXCHANGE
from okxsim.server import Exchange


async def _set_rate(request: web.Request) -> web.Response:
    ex: Exchange = request.app[EXCHANGE]
    try:
        rate = float(orjson.loads(await request.read())["rate"])
        ex.cfg = replace(ex.cfg, rate=rate)  # Exchange.step reads cfg.rate every tick
    except (KeyError, TypeError, ValueError, orjson.JSONDecodeError) as exc:
        return web.json_response(
            {"error": f'body must be {{"rate": number > 0}}: {exc}'}, status=400
        )
    return web.json_response({"rate": ex.cfg.rate})


async def _clock(request: web.Request) -> web.Response:
    clock = request.app[EXCHANGE].clock
    if getattr(clock, "speed", 1.0) != 1.0:  # offset + monotonic holds only at real-time speed
        return web.json_response({"error": "clock speed must be 1 for latency"}, status=409)
    return web.json_response({"offset": clock._wall0 - clock._mono0})  # noqa: SLF001 - see docstring


class SendLog:
    """When each tickers / books5 / trades frame left okxsim: wraps Hub.send and Hub.uncork from
    outside (okxsim itself is unchanged). During a market step okxsim collects frames and writes
    them when the step ends (Hub.cork/uncork), so a frame's send time is taken after that write;
    a frame sent outside a step is written at once and stamped at once. Bounded: the newest `cap`
    frames."""

    CHANNELS = ("tickers", "books5")
    TRADE_CHANNELS = ("trades", "trades-all")  # logged as ("trades", instId, tradeId, t)

    def __init__(self, hub, cap: int = 500_000) -> None:
        self.entries: deque = deque(maxlen=cap)
        pending: list = []
        send, uncork = hub.send, hub.uncork
        channels = self.CHANNELS
        trade_channels = self.TRADE_CHANNELS
        append = self.entries.append
        mono = time.monotonic

        def logged_send(key: tuple, obj: dict) -> None:
            send(key, obj)
            if key not in hub.subs:
                return
            if key[0] in channels:
                pending.append((key[0], key[1], int(obj["data"][0]["ts"])))
            elif key[0] in trade_channels:
                pending.append(("trades", key[1], int(obj["data"][0]["tradeId"])))
            else:
                return
            if hub._corked is None:  # noqa: SLF001 - written at once: stamp now
                logged_uncork_done()

        def logged_uncork_done() -> None:
            t = mono()
            for channel, inst, ts in pending:
                append((channel, inst, ts, t))
            pending.clear()

        def logged_uncork() -> None:
            uncork()
            logged_uncork_done()

        hub.send = logged_send
        hub.uncork = logged_uncork

    def since(self, t: float) -> list:
        return [e for e in list(self.entries) if e[3] >= t]


async def _sent(request: web.Request) -> web.Response:
    log: SendLog = request.app[SEND_LOG]
    since = float(request.query.get("since", "0"))
    return web.Response(
        body=orjson.dumps({"sent": log.since(since)}), content_type="application/json"
    )


SEND_LOG = web.AppKey("send_log", SendLog)


def make_app(argv: list[str] | None = None) -> tuple[web.Application, str, int]:
    cfg = parse_args(argv)
    ex = Exchange(cfg)
    app = ex.make_app()
    app[SEND_LOG] = SendLog(ex.hub)
    app.router.add_post("/bench/rate", _set_rate)
    app.router.add_get("/bench/clock", _clock)
    app.router.add_get("/bench/sent", _sent)
    return app, cfg.host, cfg.port


def main(argv: list[str] | None = None) -> None:
    import argparse
    import sys

    argv = sys.argv[1:] if argv is None else argv
    # --trade-history is not an okxsim CLI flag: the benchmarks need a ring large enough to
    # compare a whole run with the ground truth.
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--trade-history", type=int, default=0)
    extra, rest = pre.parse_known_args(argv)
    app, host, port = make_app(rest)
    if extra.trade_history:
        ex: Exchange = app[EXCHANGE]
        ex.cfg = replace(ex.cfg, trade_history=extra.trade_history)
        for m in ex.markets.values():
            m.trade_history = extra.trade_history
    logging.basicConfig(level=logging.WARNING)
    web.run_app(
        app, host=host, port=port, access_log=None, print=None, loop=asyncio.new_event_loop()
    )


if __name__ == "__main__":
    main()
