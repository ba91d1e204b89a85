"""`python -m collector status`: is the collector healthy? Read from Redis only.

What each feeder last reported, each shard's feeders and combined coverage (collector/shards.py;
a shard down to one feeder is a warning, not a problem: nothing is lost yet), (heartbeat every HEARTBEAT_EVERY_S: connection states, last-message age per
subscription), the gap ledger's open gaps, and the broker backlog: tasks waiting in the `ingest`
and `backfill` queues and tasks fetched by workers but not yet acknowledged (`unacked`), and the
history path (docs/history-path.md): the MongoDB breaker, the parked history's bytes, the
dead-letter spool's bytes and the drain queue.
`gather` does the reading, `assess` and `format_status` are pure.
"""

from __future__ import annotations

from typing import Any

import orjson
import redis

from collector.shards import format_shards, read_shards
from collector.shards import warnings as shard_warnings
from core import contract, keys
from core.redis_clients import tls_kwargs
from core.settings import HEARTBEAT_LATE_S
from okx.clock import now_ms as clock_ms

BACKLOG_WARN = 10_000  # tasks waiting in one queue (each carries up to FEEDER_BATCH_MAX records)


def redis_client(url: str) -> redis.Redis:
    """A short-timeout client; rediss:// without an explicit ssl_cert_reqs accepts the
    self-signed certificate of Heroku's Key-Value Store, as Celery's own connection does."""
    return redis.Redis.from_url(
        url, socket_timeout=3, socket_connect_timeout=3, decode_responses=True, **tls_kwargs(url)
    )


def gather(redis_url: str, max_gaps: int = 20, now_ms: int | None = None) -> dict:
    r = redis_client(redis_url)
    try:
        return _gather(r, max_gaps, clock_ms() if now_ms is None else now_ms)
    finally:
        r.close()


def _gather(r: redis.Redis, max_gaps: int, now_ms: int) -> dict:
    # decode_responses=True: every reply is str, which redis-py's annotations cannot say
    feeders: list[dict[str, Any]] = []
    for fid in sorted(str(f) for f in r.smembers(keys.FEEDERS)):
        h = r.hgetall(keys.feeder_key(fid))
        if not h:
            feeders.append({"id": fid, "alive": False})
            continue
        beat_age = (now_ms - int(h.get("heartbeat_ms", "0"))) / 1000
        reported = orjson.loads(h.get("connections", "{}"))
        conns = reported.get("connections", [])
        for c in conns:  # ages were measured at the heartbeat: bring them to now
            for s in c.get("subscriptions", {}).values():
                if s.get("age_s") is not None:
                    s["age_s"] = round(s["age_s"] + max(beat_age, 0.0), 1)
        feeders.append(
            {
                "id": fid,
                "alive": True,
                "heartbeat_age_s": round(beat_age, 1),
                "pid": h.get("pid"),
                "host": h.get("host"),
                "shard": h.get("shard"),
                "connections": conns,
                # the feeder's own verdict (snapshot.problems(), as /healthz), and its threads;
                # None: a heartbeat from a feeder older than these fields
                "problems": reported.get("problems"),
                "threads": reported.get("threads", []),
            }
        )
    open_ids = [str(g) for g in r.zrange(keys.GAPS_OPEN, 0, -1)]
    gaps = [r.hgetall(keys.gap_key(gid)) for gid in open_ids[-max_gaps:]]
    shards = read_shards(r, now_ms)
    st = {
        "feeders": feeders,
        "shards": shards,
        "warnings": shard_warnings(shards),
        "open_gaps": len(open_ids),
        "recent_open_gaps": gaps,
        "queues": {q: r.llen(q) for q in (contract.INGEST_QUEUE, contract.BACKFILL_QUEUE)},
        "unacked": r.hlen(keys.KOMBU_UNACKED),
        "history": _history(r, now_ms),
    }
    st["problems"] = assess(st)
    st["healthy"] = not st["problems"]
    return st


def _history(r: redis.Redis, now_ms: int) -> dict[str, Any]:
    """The breaker's hash and the backlog counters, as the workers' scripts keep them."""
    b = r.hgetall(keys.history_breaker(keys.MONGO_BREAKER))
    changed = int(b.get("changed_ms") or 0)
    return {
        "breaker": b.get("state") or "closed",
        "failures": int(b.get("failures") or 0),
        "reason": b.get("reason", ""),
        "since_s": round((now_ms - changed) / 1000, 1) if changed else None,
        "pending_bytes": int(r.get(keys.HISTORY_PENDING_BYTES) or 0),
        "pending_batches": r.llen(keys.HISTORY_PENDING) + r.llen(keys.HISTORY_DRAINING),
        "spool_bytes": int(r.get(keys.DEADLETTER_SPOOL_BYTES) or 0),
        "queue": r.llen(contract.HISTORY_QUEUE),
    }


def _bytes(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n} B"


def assess(st: dict) -> list[str]:
    """What an operator should look at; empty when healthy. Open gaps are reported, not
    problems: backfill repairs them (a growing count is visible in the gap list)."""
    problems = []
    if not st["feeders"]:
        problems.append("no feeder heartbeat in Redis (feeder not running, or another REDIS_URL)")
    for f in st["feeders"]:
        if not f["alive"]:
            problems.append(f"feeder {f['id']}: no heartbeat for {keys.HEARTBEAT_TTL_S} s")
            continue
        if f["heartbeat_age_s"] > HEARTBEAT_LATE_S:
            problems.append(f"feeder {f['id']}: last heartbeat {f['heartbeat_age_s']:.0f} s ago")
        own = f.get("problems")
        if own is not None:
            # The feeder's verdict: connections down past FEEDER_UNHEALTHY_AFTER, dead or
            # crash-looping threads, silent subscriptions, the broker, the parse-error rate.
            problems += [f"feeder {f['id']}: {p}" for p in own]
        for c in f["connections"]:
            if own is None and c.get("state") != "live":
                problems.append(
                    f"feeder {f['id']}: {c.get('name', c.get('endpoint'))} is {c.get('state')}"
                )
            for sub, s in c.get("subscriptions", {}).items():
                if s.get("error"):
                    problems.append(f"feeder {f['id']}: {sub}: {s['error']}")
    for q, n in st["queues"].items():
        if n > BACKLOG_WARN:
            problems.append(f"queue {q}: {n} tasks waiting (add workers?)")
    h = st.get("history")
    if h and h["breaker"] != "closed":
        since = f" for {h['since_s']:.0f} s" if h.get("since_s") is not None else ""
        problems.append(
            f"MongoDB breaker {h['breaker']}{since} ({h.get('reason') or 'no reason stored'}): "
            f"history parked in Redis, {_bytes(h['pending_bytes'])}"
        )
    return problems


def _known(value: Any) -> bool:
    """A value worth printing: the feeder or the ledger left out or blanked what it did not know."""
    return value is not None and value != ""


def _optional(label: str, value: Any) -> str:
    """`label value`, or nothing when the value is unknown (never `None` on an operator's screen)."""
    return f"{label}{value}" if _known(value) else ""


def format_status(st: dict) -> str:
    lines = ["healthy" if st.get("healthy", True) else "DEGRADED"]
    lines += [f"  ! {p}" for p in st.get("problems", ())]
    lines += [f"  ~ warning: {w}" for w in st.get("warnings", ())]
    lines += format_shards(st.get("shards", []))
    if not st["feeders"]:
        lines.append("no feeder heartbeat in Redis")
    for f in st["feeders"]:
        if not f["alive"]:
            lines.append(f"feeder {f['id']}: no heartbeat (stopped or expired)")
            continue
        pid = f" (pid {f['pid']})" if _known(f.get("pid")) else ""
        lines.append(f"feeder {f['id']}{pid}: heartbeat {f['heartbeat_age_s']:.1f} s ago")
        for c in f["connections"]:
            lines.append(
                f"  {c.get('name', c['endpoint'])}: {c['state']}, "
                f"{c['reconnects']} reconnects" + _optional(", last close: ", c.get("last_close"))
            )
            for sub, s in sorted(c["subscriptions"].items()):
                age = "never" if s["age_s"] is None else f"{s['age_s']:.1f} s ago"
                err = f" [{s['error']}]" if s.get("error") else ""
                lines.append(f"    {sub:<32} {s['status']:<8} last message {age}{err}")
        for t in f.get("threads", ()):
            if t.get("restarts") or not t.get("up", True):
                lines.append(
                    f"  thread {t.get('name')}: {'up' if t.get('up') else 'DOWN'}, "
                    f"{t.get('restarts', 0)} restarts" + _optional(", last: ", t.get("last_error"))
                )
    lines.append(f"open gaps: {st['open_gaps']}")
    for g in st["recent_open_gaps"]:
        words = [g.get(k) for k in ("cause", "channel", "instId")]
        if _known(g.get("start_ms")) or _known(g.get("end_ms")):
            words.append(f"{g.get('start_ms') or '?'}..{g.get('end_ms') or '?'}")
        if _known(g.get("start_id")) or _known(g.get("end_id")):
            words.append(f"ids {g.get('start_id') or '?'}..{g.get('end_id') or '?'}")
        if _known(g.get("status")):
            words.append(f"[{g['status']}]")
        lines.append(f"  gap {g.get('id', '?')}: " + " ".join(str(w) for w in words if _known(w)))
    lines.append(
        "broker backlog: "
        + ", ".join(f"{q} {n}" for q, n in st["queues"].items())
        + f"; fetched by workers, not yet acknowledged: {st.get('unacked', 0)}"
    )
    h = st.get("history")
    if h:
        lines.append(
            f"history: MongoDB breaker {h['breaker']}"
            + (f" ({h['failures']} failures)" if h.get("failures") else "")
            + f"; parked {_bytes(h['pending_bytes'])} in {h['pending_batches']} batches"
            + f"; dead-letter spool {_bytes(h['spool_bytes'])}; drain tasks waiting {h['queue']}"
        )
    return "\n".join(lines)
