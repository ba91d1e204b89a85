"""`python -m collector status`: what the feeders last reported, read from Redis only."""
from __future__ import annotations

import time

import orjson
import redis

from . import contract


def gather(redis_url: str, max_gaps: int = 20) -> dict:
    r = redis.Redis.from_url(redis_url, socket_timeout=3, socket_connect_timeout=3,
                             decode_responses=True)
    now_ms = int(time.time() * 1000)
    feeders = []
    for fid in sorted(r.smembers(contract.FEEDERS)):
        h = r.hgetall(contract.feeder_key(fid))
        if not h:
            feeders.append({"id": fid, "alive": False})
            continue
        beat = int(h.get("heartbeat_ms", "0"))
        feeders.append({"id": fid, "alive": True, "heartbeat_age_s": (now_ms - beat) / 1000,
                        "pid": h.get("pid"),
                        "connections": orjson.loads(h.get("connections", "{}")).get("connections", [])})
    open_ids = r.zrange(contract.GAPS_OPEN, 0, -1)
    gaps = []
    for gid in open_ids[-max_gaps:]:
        gaps.append(r.hgetall(contract.gap_key(gid)))
    return {"feeders": feeders, "open_gaps": len(open_ids), "recent_open_gaps": gaps,
            "queues": {q: r.llen(q) for q in (contract.INGEST_QUEUE, contract.BACKFILL_QUEUE)}}


def format_status(st: dict) -> str:
    lines = []
    if not st["feeders"]:
        lines.append("no feeder heartbeat in Redis")
    for f in st["feeders"]:
        if not f["alive"]:
            lines.append(f"feeder {f['id']}: no heartbeat (stopped or expired)")
            continue
        lines.append(f"feeder {f['id']} (pid {f['pid']}): heartbeat {f['heartbeat_age_s']:.1f} s ago")
        for c in f["connections"]:
            lines.append(f"  {c.get('name', c['endpoint'])}: {c['state']}, "
                         f"{c['reconnects']} reconnects, last close: {c.get('last_close')}")
            for sub, s in sorted(c["subscriptions"].items()):
                age = "never" if s["age_s"] is None else f"{s['age_s']:.1f} s"
                err = f" [{s['error']}]" if s.get("error") else ""
                lines.append(f"    {sub:<32} {s['status']:<8} last message {age}{err}")
    lines.append(f"open gaps: {st['open_gaps']}")
    for g in st["recent_open_gaps"]:
        lines.append(f"  gap {g.get('id')}: {g.get('cause')} {g.get('channel')} {g.get('instId')} "
                     f"{g.get('start_ms')}..{g.get('end_ms')} ids {g.get('start_id')}..{g.get('end_id')}")
    lines.append("broker backlog: " + ", ".join(f"{q} {n}" for q, n in st["queues"].items()))
    return "\n".join(lines)
