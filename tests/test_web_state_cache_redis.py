"""The latest-state cache against a real redis-server: what Redis holds is what the API answers.

Each test runs the app with the cache (`state_cache_max`) beside the same app without it, over
the same Redis, and compares bytes. A hit is proven by Redis's own command counts (INFO
commandstats: no HGETALL/ZREVRANGE/PTTL for it), so no test passes with the cache bypassed;
every change is written by the workers' writer (tasks/writers/redis_state.py) and waited for
by polling the cache's counters with a deadline, never a sleep.
"""

from __future__ import annotations

import logging
import threading
import time

import mongomock
import pytest
import redis
from fastapi.testclient import TestClient

from core import keys
from core.settings import WorkerSettings
from localrun.redis_server import RedisServer
from tasks import documents
from tasks.writers.redis_state import RedisState
from tests.polling import wait_for
from tests.test_web_lean import LEAN, _seed_top1
from tests.web_fixtures import BEARER, INST, credentials, seed
from tests.workers_fixtures import T0, ticker
from web.app import create_app
from web.stores import Stores

pytestmark = pytest.mark.integration

TICKER = f"/api/v1/ticker/{INST}"
READS = ("hgetall", "zrevrange", "pttl")


def reads_done(r: redis.Redis) -> int:
    """Read commands Redis executed so far (all clients)."""
    stats = r.info("commandstats")
    return sum(stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in READS)


def write_ticker(r: redis.Redis, last: str, ts: int) -> None:
    good, bad = documents.split_records("tickers", [ticker(last=last, ts=ts)])
    assert not bad
    RedisState(r, WorkerSettings()).write_many([("tickers", good)])


@pytest.fixture
def r(redis_url):
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    db = mongomock.MongoClient()["okex"]
    seed(db, client)
    _seed_top1(client)
    yield client
    client.close()


def pair(r: redis.Redis):
    """The app with the cache and without, over `r` (no MongoDB read on these endpoints)."""
    db = mongomock.MongoClient()["okex"]
    cached = create_app(Stores.of(r, db), credentials(), state_cache_max=100)
    plain = create_app(Stores.of(r, db), credentials(), state_cache_max=0)
    return TestClient(cached), TestClient(plain)


def warm(cached: TestClient) -> None:
    """The tracking connection is made by the first read (answered straight from Redis)."""
    cache = cached.app.state.state_cache
    assert not cache.live and cache.begin() is None
    cached.get(f"/api/v1/vwap/{INST}", headers=BEARER)
    wait_for(lambda: cache.live, 5, what="the tracking connection")
    assert cache.bypassed == 1 and len(cache) == 0  # that first read was not kept


def same(cached: TestClient, plain: TestClient, url: str) -> bytes:
    got, want = cached.get(url, headers=BEARER), plain.get(url, headers=BEARER)
    assert (got.status_code, got.content) == (want.status_code, want.content), url
    assert got.headers["content-type"] == want.headers["content-type"]
    return got.content


def hit(cached: TestClient, r: redis.Redis, url: str) -> bytes:
    """A request that must be answered from memory: Redis executes no read for it."""
    cache = cached.app.state.state_cache
    hits, before = cache.hits, reads_done(r)
    got = cached.get(url, headers=BEARER)
    assert got.status_code == 200, url
    assert cache.hits == hits + 1 and reads_done(r) == before, url
    return got.content


def test_every_cached_answer_is_the_uncached_answer_byte_for_byte(r):
    c, p = pair(r)
    with c as cached, p as plain:
        warm(cached)
        cache = cached.app.state.state_cache
        for path, query in LEAN:
            url = f"{path}?{query}" if query else path
            first = same(cached, plain, url)  # a miss, read from Redis and kept
            assert hit(cached, r, url) == first
        assert cache.live and len(cache) == len(LEAN) and cache.discarded == 0
        assert cached.app.state.counters["lean_answered"] == 2 * len(LEAN) + 1  # + warm()


def test_a_workers_write_is_seen_by_the_next_read_once_its_invalidation_arrived(r):
    c, p = pair(r)
    with c as cached, p as plain:
        warm(cached)
        cache = cached.app.state.state_cache
        same(cached, plain, TICKER)
        hit(cached, r, TICKER)
        seen = cache.invalidations
        write_ticker(r, "36000.1", T0 + 10_000)
        wait_for(lambda: cache.invalidations > seen, 5, what="the ticker's invalidation")
        assert b'"last":"36000.1"' in same(cached, plain, TICKER)
        assert b'"last":"36000.1"' in hit(cached, r, TICKER)


def test_under_a_stream_of_writes_the_cache_ends_on_what_redis_holds(r):
    """Reads race the writer's updates; a reply kept after its invalidation passed (the guard
    broken) would stay stale for good, since Redis does not invalidate a key twice unread."""
    c, p = pair(r)
    with c as cached, p as plain:
        warm(cached)
        cache = cached.app.state.state_cache
        stop = threading.Event()

        def writer() -> None:
            n = 0
            while not stop.is_set() and n < 3000:
                n += 1
                write_ticker(r, f"35000.{n}", T0 + 10_000 + n)

        thread = threading.Thread(target=writer)
        thread.start()
        try:
            answers = {cached.get(TICKER, headers=BEARER).content for _ in range(400)}
        finally:
            stop.set()
            thread.join()
        assert len(answers) > 1  # the reads did see the writes go by
        final = r.hgetall(keys.ticker(INST))["last"].encode()

        def current() -> bool:
            return b'"last":"' + final + b'"' in cached.get(TICKER, headers=BEARER).content

        wait_for(current, 5, what="the final ticker")
        same(cached, plain, TICKER)
        assert hit(cached, r, TICKER) == plain.get(TICKER, headers=BEARER).content
        assert cache.misses + cache.bypassed > 1 and cache.invalidations > 1


def tracking_client_id(cached: TestClient, r: redis.Redis) -> int:
    """The id of the app's tracking connection (asked on it), checked in CLIENT LIST."""
    client = cached.app.state.cached_reads.client
    own = cached.portal.call(client.execute, "CLIENT", "ID")  # type: ignore[union-attr]
    assert any(int(c["id"]) == own and "t" in c["flags"] for c in r.client_list())
    return int(own)


def test_killing_the_push_connection_flushes_and_reads_stay_correct_until_it_is_back(r):
    c, p = pair(r)
    with c as cached, p as plain:
        warm(cached)
        cache = cached.app.state.state_cache
        same(cached, plain, TICKER)
        hit(cached, r, TICKER)
        flushes = cache.flushes
        r.client_kill_filter(_id=tracking_client_id(cached, r))
        wait_for(lambda: not cache.live, 5, what="the cache to see its channel gone")
        assert len(cache) == 0 and cache.flushes == flushes + 1
        write_ticker(r, "37000.5", T0 + 20_000)  # no one tracks it for us now
        assert b'"last":"37000.5"' in same(cached, plain, TICKER)  # straight from Redis
        wait_for(lambda: cache.live, 5, what="tracking back")
        tracking_client_id(cached, r)  # a new tracking connection
        same(cached, plain, TICKER)
        assert b'"last":"37000.5"' in hit(cached, r, TICKER)


def test_flushdb_leaves_no_stale_answer(r):
    c, p = pair(r)
    with c as cached, p as plain:
        warm(cached)
        cache = cached.app.state.state_cache
        same(cached, plain, TICKER)
        hit(cached, r, TICKER)
        flushes = cache.flushes
        r.flushdb()
        wait_for(lambda: cache.flushes > flushes, 5, what="the null invalidation")
        assert len(cache) == 0
        got = same(cached, plain, TICKER)
        assert cached.get(TICKER, headers=BEARER).status_code == 404, got


def test_a_tracking_table_overflow_invalidates_through_the_same_path(r):
    c, p = pair(r)
    try:
        r.config_set("tracking-table-max-keys", 1)
        with c as cached, p as plain:
            warm(cached)
            cache = cached.app.state.state_cache
            urls = [TICKER, f"/api/v1/candle/{INST}", f"/api/v1/vwap/{INST}"]
            for url in urls:
                same(cached, plain, url)
            wait_for(lambda: cache.invalidations >= 2, 5, what="Redis evicting tracked keys")
            assert len(cache) <= 1  # only what Redis still tracks for us is kept
            write_ticker(r, "38000.5", T0 + 30_000)
            wait_for(lambda: b"38000.5" in cached.get(TICKER, headers=BEARER).content, 5)
            for url in urls:
                same(cached, plain, url)
    finally:
        r.config_set("tracking-table-max-keys", 0)


@pytest.fixture
def own_redis():
    """A redis-server of this test's own, with DEBUG (to stop active expiry) and restartable."""
    server = RedisServer(extra_args=["--enable-debug-command", "yes"])
    try:
        server.start()
    except Exception as exc:  # noqa: BLE001 - as the session fixture: no binary, no test
        pytest.skip(str(exc))
    yield server
    server.stop()


def test_a_redis_restart_flushes_and_the_cache_comes_back(own_redis):
    r = redis.Redis.from_url(own_redis.url, decode_responses=True)
    seed(mongomock.MongoClient()["okex"], r)
    c, p = pair(r)
    with c as cached, p as plain:
        warm(cached)
        cache = cached.app.state.state_cache
        same(cached, plain, TICKER)
        hit(cached, r, TICKER)
        own_redis.stop()
        wait_for(lambda: not cache.live, 5, what="the channel gone with Redis")
        assert len(cache) == 0
        own_redis.start()  # same port, empty (no persistence)
        assert cached.get(TICKER, headers=BEARER).status_code == 404  # no stale answer
        write_ticker(r, "39000.5", T0)
        wait_for(lambda: cache.live, 5, what="tracking back")
        same(cached, plain, TICKER)
        assert b"39000.5" in hit(cached, r, TICKER)
    r.close()


def test_a_key_expired_in_redis_is_not_served_from_memory(own_redis):
    r = redis.Redis.from_url(own_redis.url, decode_responses=True)
    seed(mongomock.MongoClient()["okex"], r)
    r.execute_command("DEBUG", "SET-ACTIVE-EXPIRE", 0)  # an expired key stays until touched
    c, p = pair(r)
    with c as cached, p as plain:
        warm(cached)
        cache = cached.app.state.state_cache
        same(cached, plain, TICKER)
        r.pexpire(keys.ticker(INST), 400)  # invalidates the first read: read it again
        wait_for(lambda: len(cache) == 0, 5, what="the PEXPIRE's invalidation")
        same(cached, plain, TICKER)
        hit(cached, r, TICKER)  # within its TTL

        set_at = time.monotonic()

        def expired() -> bool:  # by the clock: touching the key would make Redis evict it
            cached.get(f"/api/v1/vwap/{INST}", headers=BEARER)  # keeps the channel pinged
            return time.monotonic() > set_at + 0.45

        wait_for(expired, 5, what="the TTL to run out")
        bypassed, misses = cache.bypassed, cache.misses
        assert cached.get(TICKER, headers=BEARER).status_code == 404
        assert cache.misses == misses + 1 and cache.bypassed == bypassed  # expiry, not the lease
    r.close()


def test_metrics_show_the_cache_behind_the_credentials(r):
    c, p = pair(r)
    with c as cached, p as _plain:
        warm(cached)
        cached.get(TICKER, headers=BEARER)
        cached.get(TICKER, headers=BEARER)
        assert cached.get("/metrics").status_code == 401
        got = cached.get("/metrics", headers=BEARER)
        assert got.status_code == 200 and got.headers["content-type"].startswith("text/plain")
        lines = dict(
            line.split(" ", 1) for line in got.text.splitlines() if not line.startswith("#")
        )
        assert float(lines["web_state_cache_hits_total"]) == 1.0
        assert float(lines["web_state_cache_misses_total"]) == 1.0
        assert float(lines["web_state_cache_bypassed_total"]) == 1.0  # warm()'s first read
        assert float(lines["web_state_cache_live"]) == 1.0
        assert float(lines["web_lean_answered_total"]) == 3.0


def test_a_redis_that_refuses_tracking_leaves_the_cache_off_and_reads_correct(r, caplog):
    r.acl_setuser(
        "notrack",
        enabled=True,
        passwords=["+pw-notrack"],
        keys=["*"],
        commands=["+@all", "-client|tracking"],
    )
    port = r.connection_pool.connection_kwargs["port"]
    limited = redis.Redis(
        port=port, username="notrack", password="pw-notrack", decode_responses=True
    )
    # the logger's own level: a Celery worker started in-process by an earlier test leaves the
    # root logger at ERROR
    caplog.set_level(logging.WARNING, logger="web.resp")
    try:
        c, p = pair(limited)
        with c as cached, p as plain:
            cache = cached.app.state.state_cache
            for _ in range(3):
                same(cached, plain, TICKER)
            assert not cache.live and len(cache) == 0 and cache.bypassed == 3
        refused = [rec for rec in caplog.records if "refused CLIENT TRACKING ON" in rec.message]
        assert refused and "pw-notrack" not in refused[0].getMessage()
    finally:
        limited.close()
        r.acl_deluser("notrack")


def test_python_m_web_serves_from_the_cache_and_follows_a_write(r, redis_url):
    """The default `python -m web` (cache on, WEB_STATE_CACHE_MAX unset) over real sockets."""
    import os
    import subprocess
    import sys

    from localrun.redis_server import free_port
    from tests.test_web_lean import ROOT, _fetch

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWER_", "WEB_"))}
    env |= {
        "PYTHONPATH": str(ROOT),
        "PORT": str(port),
        "REDIS_URL": redis_url,
        "MONGODB_URI": "mongodb://127.0.0.1:9",
        "MONGODB_TIMEOUT_MS": "300",
        "WEB_API_TOKEN": BEARER["Authorization"].removeprefix("Bearer "),
        "WEB_FLOWER": "0",
    }
    proc = subprocess.Popen([sys.executable, "-m", "web"], cwd=ROOT, env=env)
    base = f"http://127.0.0.1:{port}"

    def metric(name: str) -> float:
        text = _fetch(base + "/metrics", BEARER)[1].decode()
        return next(
            float(v) for n, _, v in (ln.partition(" ") for ln in text.splitlines()) if n == name
        )

    try:
        wait_for(lambda: _fetch(base + "/api/v1/health", {})[0] in (200, 503), 30, what="web")

        def live() -> bool:
            _fetch(base + TICKER, BEARER)  # the first read makes the tracking connection
            return metric("web_state_cache_live") == 1.0

        wait_for(live, 10, what="the tracking connection")
        hits = metric("web_state_cache_hits_total")
        for _ in range(3):
            assert _fetch(base + TICKER, BEARER)[0] == 200
        assert metric("web_state_cache_hits_total") >= hits + 2  # the first may be the miss
        write_ticker(r, "41000.5", T0 + 40_000)
        wait_for(lambda: b"41000.5" in _fetch(base + TICKER, BEARER)[1], 5, what="the write")
        assert metric("web_state_cache_invalidations_total") >= 1
    finally:
        proc.terminate()
        proc.wait(timeout=20)
