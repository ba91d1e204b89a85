"""Dead letters: batches the workers could not store, kept in MongoDB `dead_letters` for replay.

Kombu has no dead-letter queue on Redis (a rejected message is deleted), so the ingest task
writes one document per failed batch itself:

    {_id: <task id>[:bad], task, task_id, args, kwargs, kind, producer, batch, records,
     reason: bad_batch | bad_records | retries_exhausted | error,
     exc_type, exception, retries, time, status: new | replayed, replayed_at, replay_task_id}

If MongoDB is what failed, the document goes to the Redis list `deadletters:spool` instead, and
`drain` (or `replay`) moves it into MongoDB later. If both fail, `put` raises and the task keeps
its message (it retries), so a batch is never acknowledged without being stored somewhere.

The spool is bounded in bytes (DEADLETTER_SPOOL_MAX_BYTES, counted in `deadletters:spool:bytes`
by the same scripts that push and drain): past it, the oldest spooled dead letters are dropped,
each one counted (okx_dead_letters_spool_dropped_total) and logged with its id, task, kind,
producer, batch number and record count, so an operator knows what to replay from where. A Redis
that fills would stop the broker, the feeder's publishing and every worker with it.

Commands (Heroku: `heroku run python -m tasks.deadletters ...`):

    python -m tasks.deadletters list [--status new|replayed|all] [--limit 20]
    python -m tasks.deadletters replay --id ID [--id ID ...]   # re-send these by task name
    python -m tasks.deadletters replay --all [--include-bad]   # every `new` one (bad_batch skipped)
    python -m tasks.deadletters drain                          # spool in Redis -> MongoDB

Exit status: 0 done, 1 MongoDB or Redis unreachable (one line on stderr), 2 bad arguments or
settings (core/cli_errors.py, the policy of every command).

Replaying sends the stored args to the stored task name with `send_task`, so task_routes pick the
queue, and marks the document `replayed`. Writers are idempotent, so a replay of something that
was in fact stored is harmless.
"""

from __future__ import annotations

import argparse
import builtins
import json
import logging
from datetime import UTC, datetime
from typing import Any

import pymongo
from prometheus_client import Counter

from core import keys

log = logging.getLogger(__name__)

SPOOL_DROPPED = Counter(
    "okx_dead_letters_spool_dropped_total",
    "Spooled dead letters dropped at DEADLETTER_SPOOL_MAX_BYTES (each one logged)",
)

# KEYS: spool, bytes. ARGV: doc, max bytes. Push (newest at the head); past the bound, drop the
# oldest (the tail) and return them.
SPOOL_PUSH = """
redis.call('LPUSH', KEYS[1], ARGV[1])
local total = redis.call('INCRBY', KEYS[2], string.len(ARGV[1]))
local dropped = {}
while total > tonumber(ARGV[2]) do
  local old = redis.call('RPOP', KEYS[1])
  if not old then break end
  total = redis.call('DECRBY', KEYS[2], string.len(old))
  table.insert(dropped, old)
end
return dropped
"""
# KEYS: spool, bytes. ARGV: doc. Remove one spooled doc (moved to MongoDB) and its bytes.
SPOOL_REMOVE = """
local n = redis.call('LREM', KEYS[1], -1, ARGV[1])
if n > 0 then
  if redis.call('DECRBY', KEYS[2], string.len(ARGV[1])) < 0 then redis.call('SET', KEYS[2], 0) end
end
return n
"""

PROG = "python -m tasks.deadletters"


def make_doc(
    *,
    task: str,
    task_id: str | None,
    args: list,
    reason: str,
    exc: BaseException | None,
    retries: int,
    suffix: str = "",
) -> dict[str, Any]:
    envelope = args[0] if args and isinstance(args[0], dict) else {}
    records = envelope.get("records")
    return {
        "_id": f"{task_id or 'no-id'}{suffix}",
        "task": task,
        "task_id": task_id,
        "args": args,
        "kwargs": {},
        "kind": envelope.get("kind"),
        "producer": envelope.get("producer"),
        "batch": envelope.get("batch"),
        "records": len(records) if isinstance(records, list) else None,
        "reason": reason,
        "exc_type": type(exc).__name__ if exc is not None else None,
        "exception": str(exc)[:2000] if exc is not None else None,
        "retries": retries,
        "time": datetime.now(UTC),
        "status": "new",
    }


class DeadLetters:
    """Store for dead letters: MongoDB first, the Redis spool as fallback."""

    def __init__(
        self,
        db: Any,
        redis_client: Any = None,
        *,
        timeout_s: float | None = None,
        spool_max_bytes: int = 2_000_000,
    ):
        self.db = db
        self.redis = redis_client
        self.timeout_s = timeout_s  # MongoDB's part of `put` at most this long (then the spool)
        self.spool_max_bytes = spool_max_bytes

    def put(self, doc: dict[str, Any]) -> str:
        """Store `doc` (idempotent by `_id`). Returns "mongo" or "spool"; raises if neither works."""
        try:
            with pymongo.timeout(self.timeout_s):
                self.db[keys.DEAD_LETTERS].replace_one({"_id": doc["_id"]}, doc, upsert=True)
            return "mongo"
        except Exception as mongo_exc:  # noqa: BLE001 - fall back, then re-raise below
            if self.redis is None:
                raise
            try:
                spooled = dict(doc, time=doc["time"].isoformat())
                self._spool(json.dumps(spooled))
                log.error("dead letter %s spooled to Redis (MongoDB: %r)", doc["_id"], mongo_exc)
                return "spool"
            except Exception:  # noqa: BLE001
                raise mongo_exc from None

    def _spool(self, text: str) -> None:
        dropped = self.redis.eval(
            SPOOL_PUSH, 2, keys.DEADLETTER_SPOOL, keys.DEADLETTER_SPOOL_BYTES, text,
            self.spool_max_bytes,
        )  # fmt: skip
        for raw in dropped:
            SPOOL_DROPPED.inc()
            try:
                d = json.loads(raw)
                what = " ".join(
                    f"{k}={d.get(k)}"
                    for k in ("_id", "task", "kind", "producer", "batch", "records")
                )
            except ValueError:
                what = f"{len(raw)} unreadable bytes"
            log.error(
                "dead-letter spool over DEADLETTER_SPOOL_MAX_BYTES (%d): dropped the oldest, %s",
                self.spool_max_bytes, what,
            )  # fmt: skip

    def drain(self) -> int:
        """Move spooled dead letters into MongoDB. Returns how many moved."""
        moved = 0
        while True:
            raw = self.redis.lindex(keys.DEADLETTER_SPOOL, -1)  # oldest first
            if raw is None:
                return moved
            doc = json.loads(raw)
            doc["time"] = datetime.fromisoformat(doc["time"])
            self.db[keys.DEAD_LETTERS].replace_one({"_id": doc["_id"]}, doc, upsert=True)
            # only after it is in MongoDB
            self.redis.eval(
                SPOOL_REMOVE, 2, keys.DEADLETTER_SPOOL, keys.DEADLETTER_SPOOL_BYTES, raw
            )
            moved += 1

    def list(self, status: str = "new", limit: int = 20) -> list[dict[str, Any]]:
        query = {} if status == "all" else {"status": status}
        return list(
            self.db[keys.DEAD_LETTERS].find(query, {"args": 0}).sort("time", -1).limit(limit)
        )

    def missing(self, ids: builtins.list[str]) -> builtins.list[str]:
        """The ids among `ids` that no stored dead letter has."""
        coll = self.db[keys.DEAD_LETTERS]
        return sorted(i for i in set(ids) if coll.find_one({"_id": i}, {"_id": 1}) is None)

    def replay(
        self, app: Any, *, ids: builtins.list[str] | None = None, include_bad: bool = False
    ) -> builtins.list[str]:
        """Re-send dead letters by task name; returns the new task ids."""
        coll = self.db[keys.DEAD_LETTERS]
        if ids:
            docs = [d for d in (coll.find_one({"_id": i}) for i in ids) if d is not None]
            missing = set(ids) - {d["_id"] for d in docs}
            if missing:  # the command line checks first (`missing`), with its one line
                raise SystemExit(f"no dead letter with id {', '.join(sorted(missing))}")
        else:
            query: dict[str, Any] = {"status": "new"}
            if not include_bad:
                query["reason"] = {"$ne": "bad_batch"}  # would only fail again
            docs = list(coll.find(query))
        sent = []
        for doc in docs:
            result = app.send_task(doc["task"], args=doc["args"], kwargs=doc.get("kwargs") or {})
            coll.update_one(
                {"_id": doc["_id"]},
                {
                    "$set": {
                        "status": "replayed",
                        "replayed_at": datetime.now(UTC),
                        "replay_task_id": result.id,
                    }
                },
            )
            sent.append(result.id)
        return sent


def main(argv: list[str] | None = None) -> int:
    from core.cli_errors import EXIT_CODES_EPILOG

    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__.split("\n")[0], epilog=EXIT_CODES_EPILOG
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_list = sub.add_parser("list", help="show dead letters")
    p_list.add_argument("--status", default="new", choices=("new", "replayed", "all"))
    p_list.add_argument("--limit", type=int, default=20)
    p_replay = sub.add_parser("replay", help="re-send dead letters by task name")
    group = p_replay.add_mutually_exclusive_group(required=True)
    group.add_argument("--id", action="append", dest="ids", help="dead letter id (repeatable)")
    group.add_argument("--all", action="store_true", help="every dead letter with status new")
    p_replay.add_argument(
        "--include-bad", action="store_true", help="with --all: also bad_batch ones"
    )
    sub.add_parser("drain", help="move dead letters spooled in Redis into MongoDB")
    args = parser.parse_args(argv)
    from core.cli_errors import run_cli, worker_targets

    return run_cli(PROG, lambda: _dispatch(args), worker_targets)


def _dispatch(args: argparse.Namespace) -> int:
    from core.cli_errors import EXIT_USAGE, report
    from tasks import clients
    from tasks.app import app

    store = DeadLetters(clients.mongo_db(), clients.state_redis())
    if args.cmd == "list":
        for d in store.list(args.status, args.limit):
            print(
                f"{d['_id']}  {d['time']:%Y-%m-%d %H:%M:%S}  {d['status']:8}  {d['task']}  "
                f"records={d.get('records')}  {d['reason']}: {d.get('exc_type')}: {d.get('exception')}"
            )
        return 0
    if args.cmd == "drain":
        print(f"moved {store.drain()} spooled dead letters into MongoDB")
        return 0
    missing = store.missing(args.ids or [])
    if missing:
        report(PROG, f"no dead letter with id {', '.join(missing)} (`{PROG} list --status all`)")
        return EXIT_USAGE
    moved = store.drain()
    sent = store.replay(app, ids=args.ids, include_bad=args.include_bad)
    print(f"drained {moved} from the spool; replayed {len(sent)}: {' '.join(sent)}")
    return 0
