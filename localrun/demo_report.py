"""What the demo says: the banner, the progress lines, the environment file, the summary at exit.

`banner` names every service and the side commands to try; `write_env_file` writes the variables a side command needs (`source var/demo/env.sh`), quoted for
sh. `gather_summary` reads the stores the demo ran against: records per MongoDB collection, gaps
by status (the ledger in Redis), dead letters, and the tasks the workers ran as Flower counted
them; `format_summary` turns it into the lines printed at exit (also kept as JSON).
"""

from __future__ import annotations

import base64
import json
import os
import shlex
import urllib.request
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core import contract, keys

# What a side command (python -m collector status, python -m tasks.backfill, celery call, a
# pymongo read) needs of the demo's environment. Left out on purpose: FEEDER_ID and
# FEEDER_HEALTH_PORT (a second feeder started with them would pose as the demo's), PORT and
# FLOWER_ADDRESS (Flower's own), CELERY_SOFT_SHUTDOWN_TIMEOUT (the demo's worker only).
SIDE_VARIABLES = (
    "PYTHONPATH",
    "REDIS_URL",
    "MONGODB_URI",
    "MONGODB_DB",
    "MONGO_CLIENT_FACTORY",
    "OKX_REST_URL",
    "OKX_WS_URL",
    "OKX_INSTRUMENTS",
    "OKX_CHANNELS",
    "OKX_API_KEY",
    "OKX_API_SECRET",
    "OKX_API_PASSPHRASE",
    "WEB_USER",
    "WEB_PASSWORD",
)


def backfill_example_start(now: datetime | None = None, traded_ms: int | None = None) -> str:
    """The start of the printed backfill example: now, to the second, and at least a second after
    `traded_ms`, a trade okxsim already has. A backfill window ends `filled` only if the
    exchange's history reaches below its start; okxsim starts before the Procfile processes, but
    in a calm market its first trade of an instrument can come after the banner, and a window
    from before that trade ends `unrepairable` (history ends before the gap's start), which is
    right but no demo."""
    moment = now or datetime.now(UTC)
    start_s = int(moment.timestamp())
    if traded_ms is not None:
        start_s = max(start_s, traded_ms // 1000 + 1)
    return datetime.fromtimestamp(start_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def newest_trade_ms(rest_url: str, inst_id: str, timeout: float = 2.0) -> int | None:
    """The ts of okxsim's newest trade of `inst_id` (GET /api/v5/market/trades), None if it has
    none yet or does not answer."""
    url = f"{rest_url}/api/v5/market/trades?instId={inst_id}&limit=1"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            rows = json.loads(reply.read()).get("data") or []
        return int(rows[0]["ts"]) if rows else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def banner(
    *,
    sim,
    redis_server,
    mongo_label: str,
    health_port: int,
    web_port: int,
    web_password: str,
    log: Path,
    env_file: Path,
    start: str,
) -> str:
    r = redis_server.url
    kwargs = json.dumps({"channel": "trades", "instId": "BTC-USDT", "start": start})
    # pymongo, as for any MongoDB: the demo's is a mongodb:// server too
    read_mongo = (
        "import os; from pymongo import MongoClient; "
        'db = MongoClient(os.environ["MONGODB_URI"])[os.environ.get("MONGODB_DB", "okex")]; '
        f'print(db["{keys.TRADES}"].count_documents({{}}), '
        f'db["{keys.TRADES}"].find_one({{}}, {{"_id": 0}}))'
    )
    return f"""
okx-collector demo: offline, the Procfile against okxsim (Ctrl-C stops everything)
  okxsim   {sim.ws_url}/ws/v5/public   REST {sim.rest_url}/api/v5/
  redis    {r}
  MongoDB  {mongo_label}
  dashboard http://127.0.0.1:{web_port}/   user demo   password {web_password}
  API      http://127.0.0.1:{web_port}/api/v1   docs http://127.0.0.1:{web_port}/docs
  Flower   http://127.0.0.1:{web_port}/flower   (the same user and password)
  feeder   http://127.0.0.1:{health_port}/healthz   http://127.0.0.1:{health_port}/metrics
  logs     {log}   (one line per event, prefixed with the process type)

In another terminal, first take the demo's environment (REDIS_URL, MONGODB_URI, OKX_*, ...):
  source {shlex.quote(str(env_file))}
then, for example:
  python -m collector status
  redis-cli -p {redis_server.port} hgetall {keys.ticker("BTC-USDT")}
  redis-cli -p {redis_server.port} llen {contract.INGEST_QUEUE}
  python -c {shlex.quote(read_mongo)}
  python -m tasks.backfill run trades BTC-USDT --start {start}
  celery -A tasks call {contract.BACKFILL_ALIAS_TASK} --kwargs {shlex.quote(kwargs)}
  python -m tasks.backfill gaps --all
  curl -s -u "$WEB_USER:$WEB_PASSWORD" $DEMO_WEB_URL/api/v1/ticker/BTC-USDT
  python -m tasks.export trades BTC-USDT --start {start} --format parquet --out trades.parquet
"""


def progress_line(client, elapsed: float, mongo_trades: int | None) -> str:
    last = client.hget(keys.ticker("BTC-USDT"), "last")
    orders = client.get(keys.ORDER_COUNTER) or "0"  # the order<N> counter
    stored = "-" if mongo_trades is None else str(mongo_trades)
    return (
        f"  [{elapsed:5.0f}s] BTC-USDT last {last or '-'}  trades in MongoDB {stored}  "
        f"order events {orders}  backlog ingest {client.llen(contract.INGEST_QUEUE)} "
        f"backfill {client.llen(contract.BACKFILL_QUEUE)}  "
        f"open gaps {client.zcard(keys.GAPS_OPEN)}"
    )


def env_file_text(env: dict[str, str], venv_bin: str, extra: dict[str, str]) -> str:
    """sh text exporting SIDE_VARIABLES (those set), then `extra` (the demo's URLs), with the
    venv's bin first on PATH so `python` and `celery` are the demo's."""
    lines = [
        "# Written by ./dev.sh demo: the environment of the running demo's stack.",
        "# `source` it in another shell; it is removed when the demo stops.",
        f'export PATH={shlex.quote(venv_bin)}:"$PATH"',
    ]
    for name in SIDE_VARIABLES:
        if env.get(name):
            lines.append(f"export {name}={shlex.quote(env[name])}")
    for name, value in extra.items():
        lines.append(f"export {name}={shlex.quote(value)}")
    return "\n".join(lines) + "\n"


def write_env_file(path: Path, text: str) -> None:
    """Owner-only: it holds okxsim's API key and the demo's Flower password."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def flower_task_totals(url: str, user: str, password: str, timeout: float = 5.0) -> dict | None:
    """Tasks each worker ran, by task name, summed over workers (Flower's /api/workers, which
    asks the workers themselves); None when Flower or the workers did not answer."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    request = urllib.request.Request(
        url.rstrip("/") + "/api/workers?refresh=1", headers={"Authorization": f"Basic {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            workers = json.loads(reply.read())
    except (OSError, ValueError):
        return None
    totals: Counter[str] = Counter()
    for info in workers.values():
        totals.update((info.get("stats") or {}).get("total") or {})
    return dict(sorted(totals.items())) if workers else None


def gaps_by_status(redis_client: Any) -> dict[str, int]:
    """Every gap the ledger keeps (keys.GAPS_ALL), counted by its status."""
    counts: Counter[str] = Counter()
    for gap_id in redis_client.zrange(keys.GAPS_ALL, 0, -1):
        counts[redis_client.hget(keys.gap_key(str(gap_id)), "status") or "unknown"] += 1
    return dict(sorted(counts.items()))


def collection_counts(db: Any) -> dict[str, int]:
    """Documents per collection the collector writes (those that exist)."""
    present = set(db.list_collection_names())
    return {name: db[name].count_documents({}) for name in keys.COLLECTIONS if name in present}


def gather_summary(redis_client: Any, db: Any, tasks_run: dict | None) -> dict[str, Any]:
    """The stores' counts now. A store that does not answer is reported as such, not as 0."""
    summary: dict[str, Any] = {"tasks_run": tasks_run}
    try:
        summary["mongodb"] = collection_counts(db)
    except Exception as exc:  # noqa: BLE001 - a summary line, never a traceback at exit
        summary["mongodb"] = None
        summary["mongodb_error"] = f"{type(exc).__name__}: {exc}"
    try:
        summary["gaps"] = gaps_by_status(redis_client)
        summary["dead_letters_spooled"] = redis_client.llen(keys.DEADLETTER_SPOOL)
    except Exception as exc:  # noqa: BLE001 - as above
        summary["gaps"] = None
        summary["redis_error"] = f"{type(exc).__name__}: {exc}"
    mongo = summary["mongodb"] or {}
    summary["dead_letters"] = (
        mongo.get(keys.DEAD_LETTERS, 0) if summary["mongodb"] is not None else None
    )
    return summary


def _counts(counts: dict[str, int] | None, unknown: str) -> str:
    if counts is None:
        return unknown
    return ", ".join(f"{name} {n:,}" for name, n in counts.items()) or "none"


def format_summary(
    summary: dict[str, Any], *, data_note: str, workdir: Path, log: Path, summary_file: Path
) -> str:
    tasks = summary["tasks_run"]
    dead = summary.get("dead_letters")
    spooled = summary.get("dead_letters_spooled")
    mongo_unknown = "did not answer: " + summary.get("mongodb_error", "")
    lines = [
        "demo summary",
        "  MongoDB      " + _counts(summary["mongodb"], mongo_unknown),
        "  gaps         " + _counts(summary["gaps"], "Redis did not answer"),
        "  tasks run    "
        + (_counts(tasks, "") if tasks is not None else "unknown (Flower did not answer)"),
        "  dead letters "
        + ("unknown" if dead is None else f"{dead:,} in MongoDB")
        + ("" if spooled is None else f", {spooled:,} spooled in Redis"),
        f"  MongoDB data {data_note}",
        f"  Redis data   {workdir / 'redis'} (append-only file; the next demo clears it)",
        f"  logs         {log}",
        f"  summary      {summary_file} (these counts as JSON)",
    ]
    return "\n".join(lines)
