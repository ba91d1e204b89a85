"""The lean latest-state path (web/lean_state.py) answers exactly what the FastAPI routes answer.

Each request goes to two apps over the same Redis content: the default app (the lean path in
front) and `create_app(..., lean=False)` (the FastAPI routes alone). Status, body bytes and the
headers a client reads must be equal, and the refusal counters too; `lean_answered` shows which
requests the lean path took itself (every plain success), so a test cannot pass by the lean path
quietly handing everything on. Over fakeredis here, over a real redis-server (redis.asyncio with
hiredis, as in production) and through a real `python -m web` (uvicorn) in the integration part.
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import fakeredis
import mongomock
import pytest
import redis
from fastapi.testclient import TestClient

from core import keys
from tests.polling import wait_for
from tests.web_fixtures import BEARER, INST, TOKEN, basic, credentials, seed
from tests.workers_fixtures import T0
from web.app import create_app
from web.lean_state import match
from web.params import BARS
from web.stores import Stores

ROOT = Path(__file__).resolve().parent.parent
TOP1 = "ETH-USDT"  # an instrument with only the top-of-book hash (no books5)

# Requests the lean path answers itself: (path, query)
LEAN = [
    (f"/api/v1/ticker/{INST}", ""),
    (f"/api/v1/book/{INST}", ""),
    *[(f"/api/v1/book/{INST}", f"depth={n}") for n in range(1, 6)],
    (f"/api/v1/book/{TOP1}", ""),
    (f"/api/v1/book/{TOP1}", "depth=1"),
    (f"/api/v1/trades/{INST}/latest", ""),
    *[(f"/api/v1/trades/{INST}/latest", f"limit={n}") for n in (1, 7, 100, 1000)],
    (f"/api/v1/trades/{TOP1}/latest", ""),  # no trades stored: an empty list, not a 404
    (f"/api/v1/candle/{INST}", ""),
    (f"/api/v1/candle/{INST}", "bar=1m"),
    (f"/api/v1/vwap/{INST}", ""),
]

# Requests it hands to FastAPI: refusals, and shapes it does not take in (answered the same)
HANDED_ON = [
    ("/api/v1/ticker/DOGE-USDT", ""),  # unknown instId: 404
    ("/api/v1/ticker/btc-usdt", ""),  # not an OKX id: 400
    (f"/api/v1/ticker/{TOP1}", ""),  # known instrument, no ticker: 404
    (f"/api/v1/ticker/{INST}", "x=1"),  # an extra parameter FastAPI ignores: 200
    (f"/api/v1/ticker/{INST}/", ""),  # trailing slash: FastAPI redirects
    *[(f"/api/v1/book/{INST}", f"depth={d}") for d in ("0", "6", "50", "abc", "05", "", "2.0")],
    (f"/api/v1/book/{INST}", "depth=1&depth=2"),  # repeated
    (f"/api/v1/book/{INST}", "depth=%31"),  # escaped
    ("/api/v1/book/SOL-USDT", ""),  # unknown
    *[(f"/api/v1/trades/{INST}/latest", f"limit={v}") for v in ("0", "1001", "lots", "-1")],
    (f"/api/v1/trades/{INST}/latest/x", ""),
    *[(f"/api/v1/candle/{INST}", f"bar={b}") for b in ("1h", "7m", "", "1M%20")],
    (f"/api/v1/candle/{INST}", "bar=5m"),  # a bar with no candle stored: 404
    (f"/api/v1/vwap/{INST}", f"ts={T0 + 2500}"),  # as of a time: MongoDB
    (f"/api/v1/vwap/{INST}", "ts=noon"),
    (f"/api/v1/vwap/{TOP1}", ""),  # no VWAP: 404
]

HEADERS = ("content-type", "content-length", "www-authenticate")


def _seed_top1(r) -> None:
    r.hset(
        keys.book(TOP1),
        mapping={"askPx": "2000.1", "askSz": "3", "bidPx": "1999.9", "bidSz": "4", "ts": str(T0)},
    )
    r.hset(keys.watermark_key("books", TOP1), mapping={"ts": str(T0), "id": ""})


@pytest.fixture
def apps():
    r = fakeredis.FakeRedis(decode_responses=True)
    db = mongomock.MongoClient()["okex"]
    seed(db, r)
    _seed_top1(r)
    yield from _pair(r, db)


def _pair(r, db):
    lean = create_app(Stores.of(r, db), credentials())
    plain = create_app(Stores.of(r, db), credentials(), lean=False)
    with TestClient(lean) as a, TestClient(plain) as b:
        yield a, b


def _same(apps, path, query, headers, lean_expected):
    lean, plain = apps
    before = lean.app.state.counters["lean_answered"]
    url = f"{path}?{query}" if query else path
    got = lean.get(url, headers=headers, follow_redirects=False)
    want = plain.get(url, headers=headers, follow_redirects=False)
    assert (got.status_code, got.content) == (want.status_code, want.content), url
    for name in HEADERS:
        assert got.headers.get(name) == want.headers.get(name), (url, name)
    answered = lean.app.state.counters["lean_answered"] - before
    assert answered == (1 if lean_expected else 0), url
    return got


@pytest.mark.parametrize("path, query", LEAN)
def test_lean_answers_are_the_fastapi_routes_bytes(apps, path, query):
    got = _same(apps, path, query, BEARER, lean_expected=True)
    assert got.status_code == 200 and got.headers["content-type"] == "application/json"


@pytest.mark.parametrize("path, query", HANDED_ON)
def test_everything_else_is_answered_by_the_fastapi_route(apps, path, query):
    _same(apps, path, query, BEARER, lean_expected=False)


def test_refusals_are_counted_once_as_before(apps):
    lean, plain = apps
    for path, query in HANDED_ON:
        url = f"{path}?{query}" if query else path
        lean.get(url, headers=BEARER, follow_redirects=False)
        plain.get(url, headers=BEARER, follow_redirects=False)
    counted = lean.app.state.counters
    assert counted.pop("lean_answered", 0) == 0
    assert counted == plain.app.state.counters and counted["http_404"] >= 5


@pytest.mark.parametrize("path, query", LEAN[:1] + LEAN[2:3] + LEAN[-4:])
@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer nope"}, basic(password="wrong"), {"Authorization": "Basic"}],
)
def test_no_or_wrong_credentials_are_refused_before_the_lean_path(apps, path, query, headers):
    got = _same(apps, path, query, headers, lean_expected=False)
    assert got.status_code == 401 and "authentication required" in got.json()["error"]


def test_basic_credentials_open_the_lean_path(apps):
    _same(apps, f"/api/v1/ticker/{INST}", "", basic(), lean_expected=True)


def test_the_endpoints_stay_in_the_openapi_schema(apps):
    lean, plain = apps
    schema = lean.get("/openapi.json").json()
    assert schema == plain.get("/openapi.json").json()
    for path in ("ticker/{instId}", "book/{instId}", "trades/{instId}/latest", "vwap/{instId}"):
        assert f"/api/v1/{path}" in schema["paths"]


def test_a_new_instrument_is_taken_by_the_lean_path_after_a_rescan(apps):
    lean, _ = apps
    instruments = lean.app.state.stores.instruments
    r = lean.app.state.stores.state
    now = [1000.0]
    instruments.clock = lambda: now[0]
    instruments.refresh()
    r.hset(keys.ticker("SOL-USDT"), mapping={"last": "150", "ts": str(T0)})
    assert lean.get("/api/v1/ticker/SOL-USDT", headers=BEARER).status_code == 404
    now[0] += 1.01  # an unknown id rescans at most once a second (web/stores.py)
    assert lean.get("/api/v1/ticker/SOL-USDT", headers=BEARER).json()["last"] == "150"
    assert lean.app.state.counters["lean_answered"] == 1


def test_match_takes_only_canonical_latest_state_paths():
    assert match(f"/api/v1/trades/{INST}/latest", b"limit=5") == ("trades", INST, {b"limit": b"5"})
    assert match(f"/api/v1/candle/{INST}", b"bar=1Dutc") == ("candle", INST, {b"bar": b"1Dutc"})
    for path, query in [
        (f"/api/v1/trades/{INST}", b""),  # the history range
        (f"/api/v1/vwap/{INST}/range", b""),
        (f"/api/v1/vwap/{INST}", b"ts=1"),
        ("/api/v1/ticker/", b""),
        ("/api/v2/ticker/BTC-USDT", b""),
        (f"/api/v1/book/{INST}", b"depth=1&"),
        (f"/api/v1/book/{INST}", b"depth"),
    ]:
        assert match(path, query) is None, (path, query)
    assert "1Dutc" in BARS


# ----- real redis-server, real uvicorn -------------------------------------------------------


@pytest.fixture
def real_apps(redis_url):
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    db = mongomock.MongoClient()["okex"]
    seed(db, r)
    _seed_top1(r)
    yield from _pair(r, db)
    r.close()


@pytest.mark.integration
def test_over_a_real_redis_server_the_answers_are_the_same(real_apps):
    for path, query in LEAN:
        _same(real_apps, path, query, BEARER, lean_expected=True)
    for path, query in HANDED_ON:
        _same(real_apps, path, query, BEARER, lean_expected=False)


def _fetch(url: str, headers: dict[str, str]) -> tuple[int, bytes, str | None]:
    req = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.read(), resp.headers.get("content-type")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers.get("content-type")
    except OSError:
        return 0, b"", None


@pytest.mark.integration
def test_python_m_web_answers_the_same_bytes_through_uvicorn(redis_url):
    from localrun.redis_server import free_port

    r = redis.Redis.from_url(redis_url, decode_responses=True)
    db = mongomock.MongoClient()["okex"]
    seed(db, r)
    _seed_top1(r)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWER_", "WEB_"))}
    env |= {
        "PYTHONPATH": str(ROOT),
        "PORT": str(port),
        "REDIS_URL": redis_url,
        "MONGODB_URI": "mongodb://127.0.0.1:9",
        "MONGODB_TIMEOUT_MS": "300",
        "WEB_API_TOKEN": TOKEN,
        "WEB_FLOWER": "0",
    }
    proc = subprocess.Popen([sys.executable, "-m", "web"], cwd=ROOT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _fetch(base + "/api/v1/health", {})[0] in (200, 503), 30, what="web")
        plain = create_app(Stores.of(r, db), credentials(), lean=False)
        with TestClient(plain) as c:
            for path, query in LEAN + HANDED_ON[:8]:
                url = f"{path}?{query}" if query else path
                if "ts=" in query:
                    continue  # MongoDB: the process has none
                want = c.get(url, headers=BEARER)
                got = _fetch(base + url, BEARER)
                assert got == (want.status_code, want.content, want.headers["content-type"])
        assert _fetch(base + f"/api/v1/ticker/{INST}", {})[0] == 401
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        r.close()
