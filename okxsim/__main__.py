"""python -m okxsim [--host H] [--port P] [--seed N] [--instruments A,B] [--rate X] ..."""

from __future__ import annotations

import argparse
import asyncio
import logging

from aiohttp import web

from .config import DEFAULT_INSTRUMENTS, SimConfig
from .server import Exchange


def parse_args(argv: list[str] | None = None) -> SimConfig:
    d = SimConfig()
    p = argparse.ArgumentParser(
        prog="okxsim",
        description="A local OKX v5-compatible exchange: public, business and private WebSocket "
        "channels and the REST pages the collector reads, on one port (docs/okxsim.md).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--host", default=d.host, help="address to listen on")
    p.add_argument(
        "--port", type=int, default=d.port, help="port for WebSocket and REST; 0 = any free"
    )
    p.add_argument(
        "--seed",
        type=int,
        default=d.seed,
        help="market and bot randomness: the same seed gives the same events",
    )
    p.add_argument(
        "--instruments",
        default=",".join(DEFAULT_INSTRUMENTS),
        help="comma-separated spot instIds to simulate",
    )
    p.add_argument(
        "--rate",
        type=float,
        default=d.rate,
        help="market event rate multiplier (1 = a calm market, 100 = benchmark)",
    )
    p.add_argument(
        "--checksum",
        choices=("crc", "zero", "absent"),
        default=d.checksum,
        help="books checksum: real CRC32, 0 (OKX since 2026-06-23), or no field",
    )
    p.add_argument(
        "--ws-snapshot",
        choices=("on", "off"),
        default="on",
        help="send the books snapshot on subscribe (off: clients bootstrap from REST)",
    )
    p.add_argument(
        "--idle-timeout",
        type=float,
        default=d.idle_timeout,
        help="seconds without subscriptions or pushes before close 4004",
    )
    p.add_argument(
        "--heartbeat",
        type=float,
        default=d.heartbeat_s,
        help="seconds after which a quiet book sends an empty update",
    )
    p.add_argument(
        "--seq-reset-prob",
        type=float,
        default=d.seq_reset_prob,
        help="chance per books update that the seqId restarts lower",
    )
    p.add_argument(
        "--tick-ms",
        type=int,
        default=d.tick_ms,
        help="market step and books push cadence in ms (OKX: 100)",
    )
    p.add_argument(
        "--bot-interval",
        type=float,
        default=d.bot_interval_s,
        help="simulated seconds between the account bot's actions, 0 = no bot",
    )
    p.add_argument(
        "--clock-speed", type=float, default=d.clock_speed, help="simulated seconds per real second"
    )
    p.add_argument(
        "--stagger",
        action="store_true",
        help="spread the instruments' ticks over each tick instead of one burst",
    )
    p.add_argument(
        "--strict-limits",
        choices=("on", "off"),
        default="on",
        help="enforce OKX REST rate limits (50011 and HTTP 429)",
    )
    p.add_argument(
        "--api-key", default=d.api_key, help="the one API key the simulated account accepts"
    )
    p.add_argument("--api-secret", default=d.api_secret, help="that key's secret")
    p.add_argument("--passphrase", default=d.passphrase, help="that key's passphrase")
    a = p.parse_args(argv)
    return SimConfig(
        host=a.host,
        port=a.port,
        seed=a.seed,
        instruments=tuple(i.strip() for i in a.instruments.split(",") if i.strip()),
        rate=a.rate,
        checksum=a.checksum,
        ws_snapshot=a.ws_snapshot == "on",
        idle_timeout=a.idle_timeout,
        heartbeat_s=a.heartbeat,
        seq_reset_prob=a.seq_reset_prob,
        tick_ms=a.tick_ms,
        bot_interval_s=a.bot_interval,
        clock_speed=a.clock_speed,
        stagger=a.stagger,
        strict_limits=a.strict_limits == "on",
        api_key=a.api_key,
        api_secret=a.api_secret,
        passphrase=a.passphrase,
    )


def main(argv: list[str] | None = None) -> None:
    cfg = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s okxsim %(message)s")
    logging.info(
        "listening on ws://%s:%d/ws/v5/{public,business,private} and http://%s:%d/api/v5/",
        cfg.host,
        cfg.port,
        cfg.host,
        cfg.port,
    )
    web.run_app(
        Exchange(cfg).make_app(),
        host=cfg.host,
        port=cfg.port,
        access_log=None,
        print=None,
        loop=asyncio.new_event_loop(),
    )


if __name__ == "__main__":
    main()
