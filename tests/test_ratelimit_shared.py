"""OKX REST rate limits shared through Redis by several processes (core.rest_limits).

What is checked is what OKX would see: every process records when each of its requests started
and ended; a server may count a request at any moment in between, so the test computes the most
requests any one sliding window could have counted and compares it with the limit. No assertion
depends on a request being fast; the per-process limiter is run through the same checks as a
control, to show that they catch what the shared limiter prevents.

The child processes are spawned (not forked): the parent runs okxsim's threads.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
import urllib.error
import urllib.request

import orjson
import pytest
from prometheus_client import REGISTRY

from core.rest_limits import RedisRateLimits, account_label
from okx.rest.ratelimit import RateLimits, share_of

TRADES = "/api/v5/market/history-trades"
BOOKS = "/api/v5/market/books"
SPAWN = multiprocessing.get_context("spawn")


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def most_in_any_window(spans: list[tuple[float, float]], window: float) -> int:
    """The most requests one server window [x, x + window) could hold if the server counted each
    request at any moment between its recorded start and end (pure). The worst window starts at
    some request's end, so only those x need checking."""
    return max(sum(1 for s, e in spans if e >= x and s < x + window) for _, x in spans)


def test_most_in_any_window_sees_overlapping_requests():
    # three short requests 0.4 s apart fit one 1 s window; a long one overlaps them all
    assert most_in_any_window([(0.0, 0.01), (0.4, 0.41), (0.8, 0.81)], 1.0) == 3
    assert most_in_any_window([(0.0, 0.01), (1.02, 1.03), (2.04, 2.05)], 1.0) == 1
    assert most_in_any_window([(0.0, 0.01), (1.0, 1.01), (2.0, 2.01)], 1.0) == 2  # [0.01, 1.01)
    assert most_in_any_window([(0.0, 0.01), (1.02, 1.03), (0.0, 3.0)], 1.0) == 2


def test_fallback_keeps_a_share_of_every_limit_but_at_least_one_request():
    assert share_of({"/a": (20, 2.0), "/b": (5, 1.0), "/c": (2, 2.0)}, 0.25) == {
        "/a": (5, 2.0),
        "/b": (1, 1.0),
        "/c": (1, 2.0),
    }


def test_private_endpoints_are_counted_per_account_public_ones_per_deployment():
    import fakeredis

    label = account_label("my-api-key")
    assert label and "my-api-key" not in label and len(label) == 12
    limits = RedisRateLimits(fakeredis.FakeRedis(), account=label)
    assert limits._keys("/trade/fills") == (
        f"ratelimit:log:{{/trade/fills@{label}}}",
        f"ratelimit:pause:{{/trade/fills@{label}}}",
    )
    assert limits._keys("/market/books") == (
        "ratelimit:log:{/market/books}",
        "ratelimit:pause:{/market/books}",
    )


# ----- several processes hammering one endpoint ------------------------------------------------

HAMMER_LIMITS = {"/x": (5, 0.5)}


def _hammer(redis_url: str, shared: bool, threads: int, per_thread: int, barrier, out) -> None:
    """A child process: `threads` threads each send `per_thread` paced "requests" of 5 ms."""
    limits = (
        RedisRateLimits.from_url(redis_url, 1.0, limits=HAMMER_LIMITS)
        if shared
        else RateLimits(1.0, HAMMER_LIMITS)
    )
    spans: list[tuple[float, float]] = []
    lock = threading.Lock()

    def run() -> None:
        for _ in range(per_thread):
            with limits.slot("/api/v5/x"):
                start = time.time()  # one clock for every process on this host
                time.sleep(0.005)
                end = time.time()
            with lock:
                spans.append((start, end))

    barrier.wait(timeout=60)
    workers = [threading.Thread(target=run) for _ in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    out.put((os.getpid(), spans))


def run_hammers(
    redis_url: str, shared: bool, processes: int = 3, threads: int = 2, per_thread: int = 6
) -> list[tuple[int, list]]:
    return run_spawned(processes, _hammer, redis_url, shared, threads, per_thread)


def run_spawned(n: int, target, *args) -> list:
    """Start `n` spawned processes running target(*args, barrier, out) together; return what each
    put on `out` (a process that hangs is killed, never left behind)."""
    barrier, out = SPAWN.Barrier(n), SPAWN.Queue()
    procs = [SPAWN.Process(target=target, args=(*args, barrier, out)) for _ in range(n)]
    for p in procs:
        p.start()
    try:
        return [out.get(timeout=90) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()


@pytest.mark.integration
def test_processes_sharing_redis_never_exceed_the_limit_in_any_sliding_window(redis_url):
    results = run_hammers(redis_url, shared=True)
    spans = [span for _, got in results for span in got]
    assert len(spans) == 3 * 2 * 6
    limit, window = HAMMER_LIMITS["/x"]
    assert most_in_any_window(spans, window) == limit  # never over, and the limit is reached
    # and pacing was not needlessly slow: 36 requests at 5 per 0.5 s need about 3.1 s
    duration = max(e for _, e in spans) - min(s for s, _ in spans)
    assert (len(spans) / limit - 1) * window <= duration < 3 * len(spans) / limit * window
    # nothing lingers: the log expires by itself
    import redis

    r = redis.Redis.from_url(redis_url)
    assert 0 < r.pttl("ratelimit:log:{/x}") <= (window + 60.0) * 1000 + 1000


@pytest.mark.integration
def test_control_per_process_limits_let_processes_exceed_the_limit_together(redis_url):
    spans = [span for _, got in run_hammers(redis_url, shared=False, per_thread=3) for span in got]
    assert most_in_any_window(spans, HAMMER_LIMITS["/x"][1]) > HAMMER_LIMITS["/x"][0]


# ----- pause ---------------------------------------------------------------------------------


def _wait_out_a_pause(redis_url: str, go, out) -> None:
    limits = RedisRateLimits.from_url(redis_url, 1.0)
    limits.acquire("/api/v5/public/time")  # connected, scripts loaded
    out.put("ready")
    go.wait(timeout=60)
    seen = limits.paused_for(TRADES)
    t0 = time.monotonic()
    limits.acquire(TRADES)
    trades_waited = time.monotonic() - t0
    t0 = time.monotonic()
    limits.acquire(BOOKS)
    out.put((seen, trades_waited, time.monotonic() - t0))


@pytest.mark.integration
def test_a_pause_in_one_process_holds_that_endpoint_in_the_others(redis_url):
    go, out = SPAWN.Event(), SPAWN.Queue()
    child = SPAWN.Process(target=_wait_out_a_pause, args=(redis_url, go, out))
    child.start()
    try:
        assert out.get(timeout=60) == "ready"
        RedisRateLimits.from_url(redis_url, 1.0).pause(TRADES, 2.0)
        go.set()
        seen, trades_waited, books_waited = out.get(timeout=60)
    finally:
        child.join(timeout=30)
    assert 0.5 < seen <= 2.0  # the other process sees the pause...
    assert trades_waited >= seen - 0.1  # ...waits it out...
    assert books_waited < 0.5  # ...on that endpoint only


# ----- Redis down ----------------------------------------------------------------------------


@pytest.mark.integration
def test_redis_down_falls_back_to_a_share_in_process_logs_once_and_recovers(caplog):
    from localrun.redis_server import RedisServer

    server = RedisServer().start()
    limits = RedisRateLimits.from_url(
        server.url, 1.0, limits={"/x": (4, 0.4)}, fallback_share=0.5, retry_after_s=0.2
    )
    try:
        assert limits.acquire("/api/v5/x") < 0.1
        server.stop()
        caplog.set_level(logging.WARNING, logger="core.rest_limits")
        grants0 = counter("okx_rest_ratelimit_fallback_total", endpoint="/x")
        errors0 = counter("okx_rest_ratelimit_redis_errors_total")
        t0 = time.monotonic()
        for _ in range(6):
            limits.acquire("/api/v5/x")  # never raises
        elapsed = time.monotonic() - t0
        # half of 4 per 0.4 s: 2 at once, then 2 more per window -> the 6th no earlier than 0.8 s
        assert elapsed >= 0.8 - 0.01
        assert counter("okx_rest_ratelimit_fallback_total", endpoint="/x") - grants0 == 6
        # no spinning on a dead Redis: at most one attempt per retry interval (and the first)
        errors = counter("okx_rest_ratelimit_redis_errors_total") - errors0
        assert 1 <= errors <= elapsed / 0.2 + 2
        down_logs = [r for r in caplog.records if "Redis unavailable" in r.getMessage()]
        assert len(down_logs) == 1 and "127.0.0.1" not in down_logs[0].getMessage()

        server = RedisServer(port=server.port).start()  # back, same address
        from tests.polling import wait_for

        wait_for(
            lambda: limits.acquire("/api/v5/x") is not None and not limits._down,
            timeout=10,
            what="the limiter to use Redis again",
        )
        import redis

        assert redis.Redis.from_url(server.url).exists("ratelimit:log:{/x}")
        assert sum("Redis is back" in r.getMessage() for r in caplog.records) == 1
    finally:
        server.stop()


# ----- against okxsim in strict mode -----------------------------------------------------------


@pytest.fixture(scope="module")
def sim():
    from okxsim import OkxSim

    with OkxSim(port=0, rate=100, seed=5, instruments=("BTC-USDT",), bot_interval_s=0) as s:
        yield s


def truth_trades(sim) -> list[dict]:
    with urllib.request.urlopen(
        f"{sim.rest_url}/sim/truth/trades?instId=BTC-USDT", timeout=10
    ) as r:
        return orjson.loads(r.read())["data"]


def _page_trades(
    rest_url: str, redis_url: str, shared: bool, lower: str, upper: str, barrier, out
) -> None:
    """A child process paging history-trades with no retries: one 50011 ends it."""
    from okx.rest import endpoints as history
    from okx.rest.client import RestClient, RestError

    limits = RedisRateLimits.from_url(redis_url) if shared else RateLimits()
    client = RestClient(rest_url, limits=limits, max_retries=0)
    barrier.wait(timeout=60)
    try:
        got = [
            r["tradeId"]
            for page in history.trades(client, "BTC-USDT", lower_id=lower, upper_id=upper)
            for r in page.records
        ]
        out.put(("ok", got))
    except RestError as exc:
        out.put(("error", exc.code))


def page_together(sim, redis_url: str, shared: bool, lower: str, upper: str) -> list[tuple]:
    return run_spawned(2, _page_trades, sim.rest_url, redis_url, shared, lower, upper)


@pytest.mark.integration
def test_two_processes_paging_history_trades_together_get_no_50011(sim, redis_url):
    from tests.polling import wait_for

    truth = wait_for(
        lambda: (t := truth_trades(sim)) and len(t) > 1400 and t,
        timeout=30,
        what="1400 trades in okxsim",
    )
    # 1,300 trades = 14 pages each, 28 requests together against 20 per 2 s
    lower, upper = truth[-1302]["tradeId"], truth[-1]["tradeId"]
    want = [t["tradeId"] for t in truth if int(lower) < int(t["tradeId"]) < int(upper)]
    results = page_together(sim, redis_url, True, lower, upper)
    assert [kind for kind, _ in results] == ["ok", "ok"], results
    for _, got in results:
        assert sorted(got, key=int) == want

    # control, same okxsim: per-process limits each take the whole budget and OKX says 50011
    time.sleep(2.1)  # okxsim's window must forget the run above (a wait, not a hope)
    results = page_together(sim, redis_url, False, lower, upper)
    assert ("error", "50011") in results


@pytest.mark.integration
def test_a_50011_seen_by_one_client_pauses_every_client_of_the_redis(sim, redis_url):
    from okx.rest.client import RateLimited, RestClient
    from okx.rest.endpoints import book
    from tests.polling import wait_for

    req = urllib.request.Request(
        sim.rest_url + "/sim/faults",
        method="POST",
        data=orjson.dumps({"kind": "rate_limit", "seconds": 0.5}),
    )
    urllib.request.urlopen(req, timeout=5).read()
    hit = RestClient(sim.rest_url, limits=RedisRateLimits.from_url(redis_url), max_retries=0)
    with pytest.raises(RateLimited):
        book(hit, "BTC-USDT", 5)
    other = RedisRateLimits.from_url(redis_url)  # another client, as another process
    assert other.paused_for(BOOKS) > 1.0  # one stretched 2 s window
    assert other.paused_for(TRADES) == 0.0
    wait_for(
        lambda: not_rate_limited(sim),
        timeout=10,
        interval=0.1,
        what="okxsim's rate_limit fault to end",
    )  # leave okxsim as we found it


def not_rate_limited(sim) -> bool:
    try:
        urllib.request.urlopen(sim.rest_url + "/api/v5/public/time", timeout=5).read()
        return True
    except urllib.error.HTTPError as exc:
        if exc.code != 429:
            raise
        return False


@pytest.mark.integration
def test_a_client_whose_redis_is_down_still_gets_its_data(sim):
    from localrun.redis_server import free_port
    from okx.rest.client import RestClient
    from okx.rest.endpoints import book

    before = counter("okx_rest_ratelimit_fallback_total", endpoint="/market/books")
    dead = RedisRateLimits.from_url(f"redis://127.0.0.1:{free_port()}/0")
    client = RestClient(sim.rest_url, limits=dead, max_retries=0)
    assert book(client, "BTC-USDT", 5)["asks"]
    assert counter("okx_rest_ratelimit_fallback_total", endpoint="/market/books") == before + 1
