"""`./dev.sh demo`: the whole collector offline, on this machine.

Starts, in this order: a private redis-server (broker and state, AOF on), okxsim (the local OKX),
MongoDB (MONGODB_URI when set, else the in-memory stand-in, clearly labelled), one Celery worker
and the feeder. Prints where to look, then shows a line of progress every few seconds. Ctrl-C (or
SIGTERM) stops everything, feeder first so that it flushes its batches, and leaves no process.

`./dev.sh demo --replay [FILE]` only replays a recording through the parser and the books.
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RECORDING = ROOT / "tests" / "recordings" / "okx_public_2022_fragment.jsonl"
INSTRUMENTS = "BTC-USDT,ETH-USDT,SOL-USDT,DOGE-USDT,TON-USDT,ETH-USDC,BTC-USDC,UNI-USDT,PEPE-USDT"
CHANNELS = "books,books5,trades-all,tickers,candle1m,orders,balance_and_position,positions,account"


def _stop(proc: subprocess.Popen, name: str, timeout: float = 30) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        print(f"demo: {name} did not stop in {timeout:.0f}s; killing it", file=sys.stderr)
        proc.kill()
        proc.wait()


def run(seconds: float | None) -> int:
    stopping = False

    def on_signal(signum, frame):  # noqa: ARG001
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    with contextlib.ExitStack() as stack:
        return _run(stack, seconds, lambda: stopping)


def _run(stack: contextlib.ExitStack, seconds: float | None, stop_requested) -> int:
    import redis

    from localrun.mongo_standin import MongoStandin
    from localrun.redis_server import RedisServer, free_port
    from okxsim import OkxSim, SimConfig

    # Everything started is registered for stopping at once, so a failure half-way through
    # start-up leaves no process behind. The stack unwinds in reverse: feeder first.
    workdir = ROOT / "var" / "demo"
    workdir.mkdir(parents=True, exist_ok=True)
    redis_server = RedisServer(appendonly=True, workdir=str(workdir)).start()
    stack.callback(redis_server.stop)
    sim_cfg = SimConfig(port=free_port())
    sim = OkxSim(sim_cfg).start()
    stack.callback(sim.stop)
    standin = None
    mongo_uri = os.environ.get("MONGODB_URI")
    if not mongo_uri:
        standin = MongoStandin().start()
        stack.callback(standin.stop)
        mongo_uri = standin.uri
    health_port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "REDIS_URL": redis_server.url,
        "MONGODB_URI": mongo_uri,
        "OKX_WS_URL": sim.ws_url,
        "OKX_REST_URL": sim.rest_url,
        "OKX_INSTRUMENTS": INSTRUMENTS,
        "OKX_CHANNELS": CHANNELS,
        "OKX_API_KEY": sim_cfg.api_key,
        "OKX_API_SECRET": sim_cfg.api_secret,
        "OKX_API_PASSPHRASE": sim_cfg.passphrase,
        "FEEDER_HEALTH_PORT": str(health_port),
        "FEEDER_ID": "demo-feeder",
        "REMAP_SIGTERM": "SIGQUIT",
    }
    logs = workdir
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "tasks", "worker", "-Q", "ingest,backfill",
         "-c", "2", "-l", "INFO", "--without-gossip", "--without-mingle"],
        env=env, cwd=ROOT, stdout=open(logs / "worker.log", "ab"), stderr=subprocess.STDOUT)
    stack.callback(_stop, worker, "worker")
    feeder = subprocess.Popen([sys.executable, "-m", "collector"], env=env, cwd=ROOT,
                              stdout=open(logs / "feeder.log", "ab"), stderr=subprocess.STDOUT)
    stack.callback(_stop, feeder, "feeder")
    label = "real MongoDB" if standin is None else (
        "IN-MEMORY STAND-IN (not MongoDB: forgotten on exit; set MONGODB_URI for a real one)")
    print(f"""
okx-collector demo: offline, against okxsim
  okxsim       {sim.ws_url}/ws/v5/public  REST {sim.rest_url}/api/v5/
  redis        {redis_server.url}   try: redis-cli -p {redis_server.port} hgetall ticker:BTC-USDT
  MongoDB      {label}
  feeder       health http://127.0.0.1:{health_port}/healthz  metrics /metrics
               status: REDIS_URL={redis_server.url} .venv/bin/python -m collector status
  logs         {logs}/feeder.log, {logs}/worker.log
  Ctrl-C stops everything.
""", flush=True)
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    stack.callback(client.close)
    stack.callback(print, "demo: stopping feeder, worker, MongoDB stand-in, okxsim, redis-server",
                   flush=True)
    stopping = False
    started = time.monotonic()
    rc = 0
    while not stopping and not stop_requested():
        if seconds is not None and time.monotonic() - started >= seconds:
            break
        for proc, name in ((worker, "worker"), (feeder, "feeder")):
            if proc.poll() is not None:
                print(f"demo: the {name} exited with {proc.returncode}; see {logs}/{name}.log",
                      file=sys.stderr)
                stopping, rc = True, 1
        ticker = client.hget("ticker:BTC-USDT", "last")
        trades = client.zcard("trades:BTC-USDT")
        orders = len(client.keys("order[0-9]*"))
        backlog = client.llen("ingest")
        print(f"  [{time.monotonic() - started:5.0f}s] BTC-USDT last {ticker or '-'}  "
              f"latest trades kept {trades}  order<N> keys {orders}  ingest backlog {backlog}",
              flush=True)
        for _ in range(30):
            if stopping or stop_requested():
                break
            time.sleep(0.1)
    return rc


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--replay":
        from collector.cli import main as collector_main

        return collector_main(["replay", argv[1] if len(argv) > 1 else str(RECORDING)])
    seconds = float(argv[argv.index("--seconds") + 1]) if "--seconds" in argv else None
    return run(seconds)


if __name__ == "__main__":
    raise SystemExit(main())
