"""GET /api/v1/feeders: every shard, its feeders (live or down, last heartbeat, connections) and
its combined coverage over the last 10 minutes; `warnings` when a shard is down to one feeder.
The same reading as `python -m collector status` (collector/status.py, collector/shards.py)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from collector import status as collector_status
from okx.clock import now_ms
from web.responses import Json

router = APIRouter(tags=["feeders"])


def _feeder(f: dict[str, Any]) -> dict[str, Any]:
    conns = f.get("connections") or []
    return {
        "id": f["id"],
        "alive": f.get("alive", False),
        "shard": f.get("shard"),
        "heartbeat_age_s": f.get("heartbeat_age_s"),
        "connections": [
            {"name": c.get("name", c.get("endpoint")), "state": c.get("state")} for c in conns
        ],
    }


@router.get("/feeders")
def feeders(request: Request) -> Json:
    st = collector_status._gather(request.app.state.stores.ledger, 0, now_ms())
    by_id = {f["id"]: _feeder(f) for f in st["feeders"]}
    shards = []
    for sh in st.get("shards", []):
        members = []
        for m in sh["feeders"]:
            beat = by_id.get(m["id"], {"id": m["id"], "alive": False, "connections": []})
            members.append({**beat, "live": m["live"]})
        shards.append({**sh, "feeders": members})
    listed = {m["id"] for sh in shards for m in sh["feeders"]}
    return Json(
        {
            "shards": shards,
            "unsharded": [f for fid, f in by_id.items() if fid not in listed],
            "warnings": st.get("warnings", []),
        }
    )
