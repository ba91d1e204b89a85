"""GET /api/v1/health: open to anyone (an uptime check has no credentials), 200 when "ok",
503 otherwise, so a status code alone is enough. It holds no secret: hostnames, states, ages."""

from __future__ import annotations

from typing import Any

import redis
from fastapi import APIRouter, Request

from collector import status as collector_status
from okx.clock import now_ms
from web.health import WorkersView, connections, verdict
from web.responses import Json

router = APIRouter(tags=["health"])


@router.get("/health")
def health(request: Request) -> Json:
    app_state = request.app.state
    st: dict[str, Any] | None = None
    redis_error = ""
    try:
        # the same reading as `python -m collector status` (heartbeats, the feeder's verdict)
        st = collector_status._gather(app_state.stores.ledger, 0, now_ms())
    except redis.RedisError as exc:
        redis_error = type(exc).__name__
    probe = app_state.worker_probe
    workers: WorkersView = probe.view if probe is not None else WorkersView()
    flower = app_state.flower.status() if app_state.flower is not None else None
    word, reasons = verdict(st, workers, flower, redis_error)
    body = {
        "verdict": word,
        "reasons": reasons,
        "feeder": {
            "feeders": [
                {k: f.get(k) for k in ("id", "alive", "heartbeat_age_s", "problems", "threads")}
                for f in (st or {}).get("feeders", ())
            ],
            "connections": connections((st or {}).get("feeders", [])),
            "open_gaps": (st or {}).get("open_gaps"),
        },
        "workers": {
            **workers.as_dict(),
            "queues": (st or {}).get("queues"),
            "unacked": (st or {}).get("unacked"),
        },
        "flower": flower,
    }
    return Json(body, status_code=200 if word == "ok" else 503)
