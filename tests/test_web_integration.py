"""Every endpoint of the read API against a real redis-server (`redis_url`) and pymongo on the
MongoDB wire-protocol server of the integration tests (`mongodb_uri`): the unit tests of
tests/test_web_unit.py run again here, unchanged, over the real clients; plus paging over the
real server and the unknown/inverted/huge cases there."""

from __future__ import annotations

import pytest
import redis
from fastapi.testclient import TestClient
from pymongo import MongoClient

from core import keys
from tasks.writers import Store
from tasks.writers.mongo_history import ensure_indexes
from tests import test_web_unit as unit
from tests.web_fixtures import BEARER, INST, SETTINGS, app_for, seed, write
from tests.workers_fixtures import T0, trade

pytestmark = pytest.mark.integration


@pytest.fixture
def stack(redis_url, mongodb_uri):
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    mongo = MongoClient(mongodb_uri, serverSelectionTimeoutMS=5000)
    db = mongo.get_default_database()
    ensure_indexes(db)
    seed(db, r)
    yield r, db
    r.close()
    mongo.close()


@pytest.fixture
def client(stack):
    r, db = stack
    with TestClient(app_for(r, db)) as c:
        yield c


# The unit module's endpoint tests, collected again here with the real `stack` above.
globals().update({n: f for n, f in vars(unit).items() if n.startswith("test_")})


def test_paging_a_range_over_the_real_server_returns_each_trade_once(stack):
    r, db = stack
    # 600 more trades, 7 per millisecond, then page them 13 at a time
    write(
        Store(db, r, SETTINGS),
        "trades",
        [trade(5000 + i, ts=T0 + 100 + i // 7) for i in range(600)],
    )
    expected = sorted(
        (int(d["ts"]), d["_id"])
        for d in db[keys.TRADES].find({"instId": INST})
        if T0 + 100 <= int(d["ts"]) < T0 + 180
    )
    assert len(expected) == 80 * 7
    seen, cursor = [], None
    with TestClient(app_for(r, db)) as c:
        while True:
            params = {"start": str(T0 + 100), "end": str(T0 + 180), "limit": "13"}
            if cursor:
                params["cursor"] = cursor
            body = c.get(f"/api/v1/trades/{INST}", params=params, headers=BEARER).json()
            seen += [(int(t["ts"]), f"{INST}:{t['tradeId']}") for t in body["items"]]
            cursor = body["next"]
            if not cursor:
                break
    assert seen == expected
