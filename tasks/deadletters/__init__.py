"""Dead letters: batches the workers could not store, kept in MongoDB `dead_letters` for replay.

Kombu has no dead-letter queue on Redis (a rejected message is deleted), so the ingest task
writes one document per failed batch itself:

    {_id: <task id>[:bad], task, task_id, args, kwargs, kind, producer, batch, records,
     reason: bad_batch | bad_records | retries_exhausted | error,
     exc_type, exception, retries, time, status: new | replayed, replayed_at, replay_task_id}

If MongoDB is what failed, the document goes to the Redis list `deadletters:spool` instead, and
`drain` (or `replay`) moves it into MongoDB later. If both fail, `put` raises and the task keeps
its message (it retries), so a batch is never acknowledged without being stored somewhere.

Commands (Heroku: `heroku run python -m tasks.deadletters ...`):

    python -m tasks.deadletters list [--status new|replayed|all] [--limit 20]
    python -m tasks.deadletters replay --id ID [--id ID ...]   # re-send these by task name
    python -m tasks.deadletters replay --all [--include-bad]   # every `new` one (bad_batch skipped)
    python -m tasks.deadletters drain                          # spool in Redis -> MongoDB

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

from core import keys

log = logging.getLogger(__name__)


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

    def __init__(self, db: Any, redis_client: Any = None):
        self.db = db
        self.redis = redis_client

    def put(self, doc: dict[str, Any]) -> str:
        """Store `doc` (idempotent by `_id`). Returns "mongo" or "spool"; raises if neither works."""
        try:
            self.db[keys.DEAD_LETTERS].replace_one({"_id": doc["_id"]}, doc, upsert=True)
            return "mongo"
        except Exception as mongo_exc:  # noqa: BLE001 - fall back, then re-raise below
            if self.redis is None:
                raise
            try:
                spooled = dict(doc, time=doc["time"].isoformat())
                self.redis.lpush(keys.DEADLETTER_SPOOL, json.dumps(spooled))
                log.error("dead letter %s spooled to Redis (MongoDB: %r)", doc["_id"], mongo_exc)
                return "spool"
            except Exception:  # noqa: BLE001
                raise mongo_exc from None

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
            self.redis.lrem(keys.DEADLETTER_SPOOL, -1, raw)  # only after it is in MongoDB
            moved += 1

    def list(self, status: str = "new", limit: int = 20) -> list[dict[str, Any]]:
        query = {} if status == "all" else {"status": status}
        return list(
            self.db[keys.DEAD_LETTERS].find(query, {"args": 0}).sort("time", -1).limit(limit)
        )

    def replay(
        self, app: Any, *, ids: builtins.list[str] | None = None, include_bad: bool = False
    ) -> builtins.list[str]:
        """Re-send dead letters by task name; returns the new task ids."""
        coll = self.db[keys.DEAD_LETTERS]
        if ids:
            docs = [d for d in (coll.find_one({"_id": i}) for i in ids) if d is not None]
            missing = set(ids) - {d["_id"] for d in docs}
            if missing:
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
    parser = argparse.ArgumentParser(
        prog="python -m tasks.deadletters", description=__doc__.split("\n")[0]
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
    moved = store.drain()
    sent = store.replay(app, ids=args.ids, include_bad=args.include_bad)
    print(f"drained {moved} from the spool; replayed {len(sent)}: {' '.join(sent)}")
    return 0
