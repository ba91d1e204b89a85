"""GET /api/v1/feeders: each shard's feeders and combined coverage, for the dashboard
(web/routes_feeders.py), and the dashboard's panel that shows them (web/static)."""

from __future__ import annotations

import time
from pathlib import Path

import fakeredis
import mongomock
from fastapi.testclient import TestClient

from core import coverage as coverage_store
from core import keys
from tests.test_web_health import heartbeat
from tests.web_fixtures import TOKEN, app_for

H = {"Authorization": f"Bearer {TOKEN}"}
STATIC = Path(__file__).resolve().parent.parent / "web" / "static"


def test_feeders_route_lists_shards_feeders_and_coverage():
    r = fakeredis.FakeRedis(decode_responses=True)
    now = int(time.time() * 1000)
    heartbeat(r, "feeder-a")
    r.hset(keys.feeder_key("feeder-a"), "shard", "s1")
    r.sadd(keys.SHARDS, "s1")
    r.hset(keys.shard_key("s1"), mapping={"feeder-a": str(now), "feeder-b": str(now - 60_000)})
    pipe = r.pipeline()
    coverage_store.write(
        pipe,
        "s1",
        "feeder-a",
        [(("books5", "BTC-USDT"), now - 700_000, now)],
        now_ms=now,
        trim=False,
    )
    pipe.execute()
    with TestClient(app_for(r, mongomock.MongoClient()["okex"])) as c:
        assert c.get("/api/v1/feeders").status_code == 401  # behind the API's credentials
        body = c.get("/api/v1/feeders", headers=H).json()
    (sh,) = body["shards"]
    assert sh["shard"] == "s1" and sh["live"] == 1
    a, b = sh["feeders"]
    assert (a["id"], a["live"], a["shard"], a["connections"][0]["state"]) == (
        "feeder-a",
        True,
        "s1",
        "live",
    )
    assert (b["id"], b["live"], b["alive"]) == ("feeder-b", False, False)
    assert sh["streams"][0]["covered_share"] > 0.99
    assert body["warnings"] == ["shard s1: down to 1 live feeder(s) (feeder-b down)"]


def test_dashboard_has_the_feeders_panel_and_the_covered_status():
    html = (STATIC / "index.html").read_text()
    js = (STATIC / "dashboard.js").read_text()
    assert 'id="shards"' in html and 'id="gaps-covered"' in html
    assert 'api("feeders"' in js and "renderFeeders" in js
