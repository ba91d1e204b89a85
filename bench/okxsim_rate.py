"""Benchmark: messages/s okxsim sustains to one fast client subscribed to everything, and the
sim's CPU. Reports figures only (no pass/fail).

    .venv/bin/python bench/okxsim_rate.py [--rates 1,20,60,120] [--seconds 8]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time

import aiohttp

from localrun.redis_server import free_port

INSTS = (
    "BTC-USDT",
    "ETH-USDT",
    "SOL-USDT",
    "DOGE-USDT",
    "TON-USDT",
    "ETH-USDC",
    "BTC-USDC",
    "UNI-USDT",
    "PEPE-USDT",
)
PUBLIC = ("books", "books5", "bbo-tbt", "trades", "tickers")
BUSINESS = ("trades-all", "candle1s", "candle1m")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def consume(
    url: str, channels: tuple[str, ...], counter: list[int], stop: asyncio.Event
) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.ws_connect(url, max_msg_size=0, autoping=True) as ws:
            args = [{"channel": c, "instId": i} for c in channels for i in INSTS]
            await ws.send_json({"op": "subscribe", "args": args})
            while not stop.is_set():
                msg = await ws.receive()
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                counter[0] += 1


async def measure(port: int, pid: int, seconds: float) -> tuple[float, float]:
    counter = [0]
    stop = asyncio.Event()
    base = f"ws://127.0.0.1:{port}/ws/v5/"
    tasks = [
        asyncio.create_task(consume(base + "public", PUBLIC, counter, stop)),
        asyncio.create_task(consume(base + "business", BUSINESS, counter, stop)),
    ]
    await asyncio.sleep(2.0)  # warm-up: snapshots and acks
    n0, c0, t0 = counter[0], cpu_seconds(pid), time.monotonic()
    await asyncio.sleep(seconds)
    n1, c1, t1 = counter[0], cpu_seconds(pid), time.monotonic()
    stop.set()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return (n1 - n0) / (t1 - t0), (c1 - c0) / (t1 - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rates", default="1,20,60,120")
    ap.add_argument("--seconds", type=float, default=8.0)
    a = ap.parse_args()
    print(f"{'rate':>6} {'msgs/s':>10} {'sim CPU (cores)':>16} {'msgs per CPU-s':>15}")
    for rate in [float(r) for r in a.rates.split(",")]:
        port = free_port()
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "okxsim",
                "--port",
                str(port),
                "--rate",
                str(rate),
                "--strict-limits",
                "off",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 15
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), 0.2).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            rate_msgs, cpu = asyncio.run(measure(port, proc.pid, a.seconds))
            per = rate_msgs / cpu if cpu else float("nan")
            print(f"{rate:>6g} {rate_msgs:>10.0f} {cpu:>16.2f} {per:>15.0f}", flush=True)
        finally:
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    main()
