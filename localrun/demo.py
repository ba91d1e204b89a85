"""`./dev.sh demo`: the whole collector offline, on this machine, run from the Procfile.

Starts, in this order: a private redis-server (broker and state), okxsim (the local OKX), MongoDB
(MONGODB_URI when set; else a `mongod` on PATH; else the MongoDB wire-protocol server nx-27017,
localrun/mongo_server.py; the last two keep their data in the work directory across demos), all
through pymongo as in production, the Procfile's release command (indexes), then the Procfile's `web`
(Flower), `feeder`, `worker` and `beat` through honcho (localrun/procfile.py). Prints where to
look and a line of progress every few seconds. Ctrl-C, SIGTERM or `--seconds N` stops
everything: the Procfile processes get SIGTERM as on Heroku (30 s grace), then the services go,
and no process is left behind.

`./dev.sh demo --replay [FILE]` only replays a recording through the parser and the books.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from core import keys
from localrun.demo_report import (
    backfill_example_start,
    banner,
    env_file_text,
    flower_task_totals,
    format_summary,
    gather_summary,
    newest_trade_ms,
    progress_line,
    write_env_file,
)
from localrun.mongo_standin import CLIENT_FACTORY
from localrun.processes import descendants, identities, kill_all, stop_process
from localrun.procfile import HEROKU_GRACE_S, PROCFILE, read_procfile

ROOT = Path(__file__).resolve().parent.parent
RECORDING = ROOT / "tests" / "recordings" / "okx_public_2022_fragment.jsonl"
INSTRUMENTS = "BTC-USDT,ETH-USDT,SOL-USDT,DOGE-USDT,TON-USDT,ETH-USDC,BTC-USDC,UNI-USDT,PEPE-USDT"
CHANNELS = "books,books5,trades-all,tickers,candle1m,orders,balance_and_position,positions,account"
PROCESS_TYPES = ("web", "feeder", "worker", "beat")
PROGRESS_EVERY_S = 3.0
STANDIN_SCHEME = "mongostandin://"


def _wait_until(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not come up within {timeout:.0f} s")
        time.sleep(0.05)


def _port_open(port: int) -> bool:
    import socket

    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
        return True
    return False


def _start_service(
    stack: contextlib.ExitStack, args: list[str], log: Path, port: int, what: str
) -> subprocess.Popen:
    proc = subprocess.Popen(
        args, cwd=ROOT, stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True
    )
    stack.callback(stop_process, proc, what, 10)
    _wait_until(lambda: _port_open(port) or proc.poll() is not None, 30, what)
    if proc.poll() is not None:
        raise RuntimeError(f"{what} exited with {proc.returncode}; see {log}")
    return proc


def start_mongodb(stack: contextlib.ExitStack, workdir: Path) -> tuple[str, str, str]:
    """-> (MONGODB_URI, label, what becomes of its data). Always a `mongodb://` server that
    pymongo talks to: MONGODB_URI when set, else a `mongod` on PATH, else the MongoDB
    wire-protocol server of localrun/mongo_server.py (nx-27017 on SQLite). The last two keep
    their data under the work directory, so a restarted demo continues with it."""
    from localrun.mongo_server import MongoServer, MongoServerError
    from localrun.redis_server import free_port

    uri = os.environ.get("MONGODB_URI")
    if uri:
        return uri, "real MongoDB from MONGODB_URI", "stays in the MongoDB at MONGODB_URI"
    mongod = shutil.which("mongod")
    if mongod:
        port = free_port()
        dbpath = workdir / "mongod"
        dbpath.mkdir(parents=True, exist_ok=True)
        _start_service(
            stack,
            [mongod, "--dbpath", str(dbpath), "--port", str(port), "--bind_ip", "127.0.0.1"],
            workdir / "mongod.log",
            port,
            "mongod",
        )
        return (
            f"mongodb://127.0.0.1:{port}",
            f"real MongoDB (mongod on PATH, data in {dbpath})",
            f"stays in {dbpath}: the next demo continues with it (delete it to start empty)",
        )
    server = MongoServer(workdir=str(workdir / "mongo"))
    stack.callback(server.stop)
    try:
        server.start()
    except MongoServerError as exc:
        raise RuntimeError(str(exc)) from None
    return (
        server.uri,
        f"MongoDB wire protocol: nx-27017 on SQLite, through pymongo (data in {server.data_dir}; "
        "set MONGODB_URI or put mongod on PATH for a real MongoDB)",
        f"stays in {server.data_dir}: the next demo continues with it (delete it to start empty)",
    )


def demo_env(
    *, redis_url: str, mongo_uri: str, sim, health_port: int, web_port: int, web_password: str
) -> dict[str, str]:
    env = {
        **os.environ,
        # The Procfile says `python` and `celery`, as Heroku runs them: this venv's, here.
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        "PYTHONPATH": str(ROOT),
        "REDIS_URL": redis_url,
        "MONGODB_URI": mongo_uri,
        "OKX_WS_URL": sim.ws_url,
        "OKX_REST_URL": sim.rest_url,
        "OKX_INSTRUMENTS": INSTRUMENTS,
        "OKX_CHANNELS": CHANNELS,
        "OKX_API_KEY": sim.config.api_key,
        "OKX_API_SECRET": sim.config.api_secret,
        "OKX_API_PASSPHRASE": sim.config.passphrase,
        "FEEDER_HEALTH_PORT": str(health_port),
        "FEEDER_ID": "demo-feeder",
        "PORT": str(web_port),
        "FLOWER_ADDRESS": "127.0.0.1",  # the demo's Flower is for this machine only
        "WEB_USER": "demo",
        "WEB_PASSWORD": web_password,
    }
    # pymongo, as in production, for every mongodb:// URI (an inherited factory is dropped); the
    # stand-in's client only for a mongostandin:// URI, which a test may still hand in
    env.pop("MONGO_CLIENT_FACTORY", None)
    if mongo_uri.startswith(STANDIN_SCHEME):
        env["MONGO_CLIENT_FACTORY"] = CLIENT_FACTORY
    # Ctrl-C should not take 20 s: the worker's soft shutdown (time for running tasks to finish)
    # is 3 s here unless you set it; production keeps 20 s of Heroku's 30 s grace.
    env.setdefault("CELERY_SOFT_SHUTDOWN_TIMEOUT", "3")
    return env


def _mongo_db(mongo_uri: str):
    """(the demo's database, its client), through pymongo as the workers do."""
    from tasks.clients import pymongo_client

    client = pymongo_client(mongo_uri, 2000)
    return client[os.environ.get("MONGODB_DB", "okex")], client


def _count_trades(db):
    """A function returning the number of stored trades (None when MongoDB does not answer)."""
    coll = db[keys.TRADES]

    def count() -> int | None:
        try:
            return coll.estimated_document_count()
        except Exception:  # noqa: BLE001 - progress only; MongoDB trouble shows in the logs
            return None

    return count


def _first_trade_ms(rest_url: str, inst_id: str = "BTC-USDT", wait_s: float = 20.0) -> int | None:
    """A trade of `inst_id` okxsim already has (the backfill example's window starts after it),
    waited for at most `wait_s` (a calm market's first trade); None: the example starts now."""
    deadline = time.monotonic() + wait_s
    while (ts := newest_trade_ms(rest_url, inst_id)) is None and time.monotonic() < deadline:
        time.sleep(0.2)
    return ts


def run(seconds: float | None) -> int:
    stop_requested = False

    def on_signal(signum, frame):  # noqa: ARG001
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with contextlib.ExitStack() as stack:
        try:
            return _run(stack, seconds, lambda: stop_requested)
        except RuntimeError as exc:
            print(f"demo: {exc}", file=sys.stderr)
            return 1


def _run(stack: contextlib.ExitStack, seconds: float | None, stop_requested) -> int:
    import redis

    from localrun.redis_server import RedisServer, free_port
    from okxsim import OkxSim, SimConfig

    # Everything started is registered on the stack at once, so a failure half-way through
    # start-up leaves no process behind; the stack unwinds in reverse (Procfile processes first).
    workdir = Path(os.environ.get("DEMO_WORKDIR") or ROOT / "var" / "demo")
    workdir.mkdir(parents=True, exist_ok=True)
    redis_dir = workdir / "redis"
    # Redis starts empty each demo (a new okxsim is a new exchange: its state, queue and gap
    # ledger mean nothing to the next one); MongoDB's history is kept (start_mongodb).
    shutil.rmtree(redis_dir, ignore_errors=True)
    redis_dir.mkdir()
    redis_server = RedisServer(appendonly=True, workdir=str(redis_dir)).start()
    stack.callback(redis_server.stop)
    # A new seed each run: MongoDB keeps the last run's history, and okxsim's trade ids follow
    # from its seed, so the same seed would hand out the same ids again and the new trades would
    # be refused as duplicates of the old ones (a real exchange never reuses an id).
    sim = OkxSim(SimConfig(port=free_port(), seed=time.time_ns() % 2**31)).start()
    stack.callback(sim.stop)
    mongo_uri, mongo_label, data_note = start_mongodb(stack, workdir)
    health_port, web_port = free_port(), free_port()
    web_password = secrets.token_urlsafe(9)
    env = demo_env(
        redis_url=redis_server.url,
        mongo_uri=mongo_uri,
        sim=sim,
        health_port=health_port,
        web_port=web_port,
        web_password=web_password,
    )
    log = workdir / "processes.log"
    env_file, summary_file = workdir / "env.sh", workdir / "summary.json"
    summary_file.unlink(missing_ok=True)  # a summary there is always this run's

    release = read_procfile().get("release")
    if release:
        done = subprocess.run(
            release, shell=True, cwd=ROOT, env=env, capture_output=True, text=True
        )
        if done.returncode != 0:
            raise RuntimeError(f"release ({release}) failed: {done.stderr.strip()[-500:]}")

    with open(log, "w"):
        pass
    runner = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "localrun.procfile",
            "--procfile",
            str(PROCFILE),
            "--log",
            str(log),
            *PROCESS_TYPES,
        ],
        cwd=ROOT,
        env=env,
        start_new_session=True,
    )  # our Ctrl-C must not reach it directly
    seen: set[tuple[int, str]] = set()  # (pid, start time) of every process honcho started
    stack.callback(_stop_runner, runner, seen)

    flower_url = f"http://127.0.0.1:{web_port}/flower"  # python -m web proxies Flower there
    write_env_file(
        env_file,
        env_file_text(
            env,
            str(Path(sys.executable).parent),
            {
                "DEMO_FLOWER_URL": flower_url,
                "DEMO_FEEDER_URL": f"http://127.0.0.1:{health_port}",
                "DEMO_WEB_URL": f"http://127.0.0.1:{web_port}",  # API, dashboard, /flower
            },
        ),
    )
    stack.callback(env_file.unlink, missing_ok=True)  # its services are about to be gone
    print(
        banner(
            sim=sim,
            redis_server=redis_server,
            mongo_label=mongo_label,
            health_port=health_port,
            web_port=web_port,
            web_password=web_password,
            log=log,
            env_file=env_file,
            start=backfill_example_start(traded_ms=_first_trade_ms(sim.rest_url)),
        ),
        flush=True,
    )
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    stack.callback(client.close)
    db, mongo_client = _mongo_db(mongo_uri)
    stack.callback(mongo_client.close)
    count_trades = _count_trades(db)
    started = time.monotonic()
    next_line = started
    while not stop_requested():
        now = time.monotonic()
        if seconds is not None and now - started >= seconds:
            break
        if runner.poll() is not None:
            print(
                f"demo: a Procfile process exited, so honcho stopped them all; see {log}",
                file=sys.stderr,
            )
            return 1
        if now >= next_line:
            next_line = now + PROGRESS_EVERY_S
            seen.update(identities(descendants(runner.pid)))
            with contextlib.suppress(redis.RedisError):
                print(progress_line(client, now - started, count_trades()), flush=True)
        time.sleep(0.1)
    # The workers' task counts while they still run (Flower asks them), then the stores' counts
    # once every Procfile process has stopped: nothing writes any more, the counts are final.
    tasks_run = flower_task_totals(flower_url, "demo", web_password)
    print(
        "demo: stopping: SIGTERM to web, feeder, worker, beat; then MongoDB, okxsim, redis",
        flush=True,
    )
    _stop_runner(runner, seen)
    summary = gather_summary(client, db, tasks_run)
    summary_file.write_text(json.dumps(summary, indent=2) + "\n")
    print(
        format_summary(
            summary, data_note=data_note, workdir=workdir, log=log, summary_file=summary_file
        ),
        flush=True,
    )
    return 0


def _stop_runner(runner: subprocess.Popen, seen: set[tuple[int, str]]) -> None:
    """SIGTERM to honcho, which passes it to every process group and waits Heroku's grace; if
    anything outlives that, it is killed, so no process of the demo survives it. Safe to call
    twice (the stack calls it again on the way out)."""
    if runner.poll() is None:
        seen.update(identities(descendants(runner.pid)))
    stop_process(runner, "the Procfile processes", HEROKU_GRACE_S + 10)
    kill_all(seen)


class _Parser(argparse.ArgumentParser):
    """Operator errors as one line and exit status 2 (argparse would add its usage block)."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"wants a number of seconds, not {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"wants a positive number, not {text!r}")
    return value


def parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="./dev.sh demo",
        description="The whole collector offline on this machine: a private redis-server, okxsim "
        "(the local OKX), MongoDB (MONGODB_URI, else mongod on PATH, else the wire-protocol "
        "server nx-27017, data kept in var/demo/mongo), and the Procfile's web, feeder, worker and beat. Ctrl-C stops everything.",
        epilog="Another shell takes the demo's environment with `source var/demo/env.sh` "
        "(printed at start). Logs: var/demo/processes.log; at exit a summary, also in "
        "var/demo/summary.json. DEMO_WORKDIR moves var/demo.",
    )
    p.add_argument(
        "--seconds",
        type=_seconds,
        metavar="N",
        help="stop by itself after N seconds (default: run until Ctrl-C)",
    )
    p.add_argument(
        "--replay",
        nargs="?",
        const=str(RECORDING),
        metavar="FILE",
        help="only replay a recording through the parser and the books, then exit "
        f"(default FILE: {RECORDING.relative_to(ROOT)})",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.replay is not None:
        if args.seconds is not None:
            parser().error("--replay runs once and stops by itself: no --seconds with it")
        from collector.cli import main as collector_main

        return collector_main(["replay", args.replay])
    return run(args.seconds)


if __name__ == "__main__":
    raise SystemExit(main())
