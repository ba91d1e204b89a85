"""The REST client and its rate limits: pure parts, a scripted hostile HTTP server, and okxsim.

Timing: no assertion here needs a request to be fast. Pacing is checked by lower bounds (a
limiter can only make callers wait longer, never shorter, than its arithmetic says) and by the
server's verdict (0 rejections from okxsim in strict mode).
"""

from __future__ import annotations

import http.server
import threading
import time
import urllib.request
from contextlib import contextmanager

import orjson
import pytest
from prometheus_client import REGISTRY

from core.settings import WorkerSettings, load
from okx.rest import endpoints as history
from okx.rest.client import (
    RateLimited,
    RestClient,
    RestError,
    check_envelope,
    classify,
    retry_delay,
)
from okx.rest.ratelimit import (
    DEFAULT_RATE_FACTOR,
    LIMITS,
    NoLimits,
    RateLimits,
    earliest_start,
    endpoint_of,
)
from okx.signing import Credentials


def rate_factor_from_env(env: dict[str, str]) -> float:
    """OKX_REST_RATE_FACTOR as both processes' settings read it (core/settings.py); they agree."""
    feeder, worker = load(env=env).rest_rate_factor, WorkerSettings.from_env(env).rest_rate_factor
    assert feeder == worker
    return feeder


SECRET, PASSPHRASE = "s3cret-never-logged", "pass-never-logged"
CREDS = Credentials("key-12345678", SECRET, PASSPHRASE)


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# ----- pure parts --------------------------------------------------------------------------------


def test_endpoint_of_strips_the_prefix_and_the_query():
    assert endpoint_of("/api/v5/market/history-trades?instId=X") == "/market/history-trades"
    assert endpoint_of("/market/books") == "/market/books"


def test_limits_table_matches_the_protocol_doc():
    assert LIMITS["/market/history-trades"] == (20, 2.0)
    assert LIMITS["/trade/fills-history"] == (10, 2.0)
    assert LIMITS["/trade/orders-history"] == (40, 2.0)
    assert LIMITS["/account/bills"] == (5, 1.0)


def test_earliest_start_waits_for_the_oldest_request_to_leave_the_window():
    from collections import deque

    stamps = deque([10.0, 10.5, 11.0])
    assert earliest_start(stamps, 0, 4, 2.0, 11.2) == 11.2  # a free slot: go now
    assert earliest_start(stamps, 0, 3, 2.0, 11.2) == 12.0  # full: oldest + window
    assert earliest_start(stamps, 1, 3, 2.0, 11.2) == 12.5  # one in flight: 2nd oldest
    assert earliest_start(deque(), 3, 3, 2.0, 11.2) == float("inf")  # all in flight: wait


@pytest.mark.parametrize(
    "raw, want", [(None, DEFAULT_RATE_FACTOR), ("", DEFAULT_RATE_FACTOR), ("0.5", 0.5), ("1", 1.0)]
)
def test_rate_factor_from_env(raw, want):
    env = {} if raw is None else {"OKX_REST_RATE_FACTOR": raw}
    assert rate_factor_from_env(env) == want


@pytest.mark.parametrize("raw", ["fast", "0", "1.5", "-1"])
def test_a_bad_rate_factor_is_an_error_not_a_silent_default(raw):
    with pytest.raises(ValueError, match="OKX_REST_RATE_FACTOR"):
        rate_factor_from_env({"OKX_REST_RATE_FACTOR": raw})


def test_default_pacing_reaches_at_least_90_percent_of_every_limit():
    limits = RateLimits()
    for endpoint, (n, window) in LIMITS.items():
        assert 0.9 * n / window <= limits.rate("/api/v5" + endpoint) <= n / window


def test_no_sliding_window_ever_holds_more_than_the_limit_across_threads():
    limits = RateLimits(factor=1.0, limits={"/x": (3, 0.3)})
    starts: list[float] = []
    lock = threading.Lock()

    def worker():
        for _ in range(3):
            with limits.slot("/api/v5/x"):
                with lock:
                    starts.append(time.monotonic())
                time.sleep(0.01)  # the "request"

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    starts.sort()
    assert len(starts) == 12
    # request i+3 starts a full window after request i *ended* (>= started + 10 ms)
    assert all(b - a >= 0.3 + 0.01 for a, b in zip(starts, starts[3:]))


def test_pause_holds_every_caller_of_that_endpoint_only():
    limits = RateLimits(factor=1.0)
    limits.pause("/api/v5/market/history-trades", 0.3)
    assert limits.paused_for("/api/v5/market/history-trades") > 0.2
    assert limits.acquire("/api/v5/market/books") < 0.1
    t0 = time.monotonic()
    waited = limits.acquire("/api/v5/market/history-trades")
    assert waited >= 0.29 and time.monotonic() - t0 >= 0.29


@pytest.mark.parametrize(
    "code, kind",
    [
        ("0", "ok"),
        ("50011", "rate_limited"),
        ("50061", "rate_limited"),
        ("50013", "retryable"),
        ("51000", "rejected"),
        ("50113", "rejected"),
        ("59999", "rejected"),
    ],
)
def test_classify(code, kind):
    assert classify(code) == kind


def test_backoff_is_exponential_capped_and_jittered_in_its_upper_half():
    assert [retry_delay(a, lambda: 1.0) for a in range(7)] == [0.5, 1, 2, 4, 8, 10, 10]
    assert [retry_delay(a, lambda: 0.0) for a in range(3)] == [0.25, 0.5, 1]


@pytest.mark.parametrize(
    "obj, reason",
    [
        ([1], "JSON object"),
        ({"data": []}, "no code"),
        ({"code": "0"}, "no data list"),
        ({"code": "0", "data": {"a": 1}}, "no data list"),
        ({"code": "0", "data": [1]}, "dicts"),
        ({"code": "51001", "msg": "Instrument ID doesn't exist", "data": []}, "51001"),
    ],
)
def test_check_envelope_refuses_hostile_replies(obj, reason):
    with pytest.raises(RestError, match=reason):
        check_envelope(obj, "GET /x")


# ----- against a scripted HTTP server ------------------------------------------------------------


class Script(http.server.BaseHTTPRequestHandler):
    replies: list = []  # (status, body bytes) in order; the last one repeats
    seen: list = []

    def do_GET(self):  # noqa: N802 - http.server's name
        type(self).seen.append((self.path, dict(self.headers)))
        i = min(len(self.seen), len(self.replies)) - 1
        status, body = self.replies[i]
        if status == "close":
            self.close_connection = True
            self.wfile.flush()
            self.connection.shutdown(2)
            return
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@contextmanager
def scripted(*replies):
    handler = type("H", (Script,), {"replies": list(replies), "seen": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler.seen
    finally:
        server.shutdown()
        server.server_close()


def ok(data) -> tuple[int, bytes]:
    return 200, orjson.dumps({"code": "0", "msg": "", "data": data})


def okx(code: str, msg: str = "", status: int = 200) -> tuple[int, bytes]:
    return status, orjson.dumps({"code": code, "msg": msg, "data": []})


def client(url: str, **kw) -> tuple[RestClient, list[float]]:
    sleeps: list[float] = []
    kw.setdefault("limits", False)
    return RestClient(url, credentials=CREDS, sleep=sleeps.append, rng=lambda: 1.0, **kw), sleeps


def test_transient_failures_are_retried_with_backoff_then_succeed():
    with scripted(
        (500, b"oops"),
        okx("50011", "Too Many Requests", 429),
        (429, b""),
        okx("50013", "busy"),
        (200, b"not json at first"),
        ok([{"a": "1"}]),
    ) as (url, seen):
        c, sleeps = client(url)
        with pytest.raises(RestError, match="not JSON"):  # a garbled 200 is not retried...
            c.get("/api/v5/market/tickers", {"instType": "SPOT"})
        assert sleeps == [0.5, 1, 2, 4]  # ...after 4 transient failures
        assert c.get("/api/v5/market/tickers") == [{"a": "1"}]


def test_errors_retrying_cannot_fix_raise_at_once():
    for reply, code in [
        (okx("51000", "Parameter limit error"), "51000"),
        (okx("50113", "Invalid Sign", 401), "50113"),
        ((404, b"<html>"), None),
    ]:
        with scripted(reply) as (url, seen):
            c, sleeps = client(url)
            with pytest.raises(RestError) as info:
                c.get("/api/v5/market/history-trades", {"instId": "X"})
            assert len(seen) == 1 and sleeps == []
            assert code is None or info.value.code == code


def test_rate_limited_until_retries_run_out_raises_rate_limited_and_counts():
    before = counter("okx_rest_rate_limited_total", endpoint="/market/candles")
    with scripted(okx("50011", "Too Many Requests", 429)) as (url, seen):
        c, sleeps = client(url, max_retries=3)
        with pytest.raises(RateLimited) as info:
            c.get("/api/v5/market/candles", {"instId": "X"})
    assert info.value.code == "50011" and len(seen) == 4 and len(sleeps) == 3
    assert counter("okx_rest_rate_limited_total", endpoint="/market/candles") - before == 4


def test_a_rate_limit_reply_pauses_the_endpoint_for_every_client_of_the_process():
    limits = RateLimits(factor=1.0, limits={"/market/history-trades": (20, 0.4)})
    waited = counter("okx_rest_wait_seconds_total", endpoint="/market/history-trades")
    with scripted(okx("50011", "Too Many Requests", 429), ok([])) as (url, seen):
        c, sleeps = client(url, limits=limits)
        t0 = time.monotonic()
        assert c.get("/api/v5/market/history-trades") == []
        # the backoff sleep is faked: the retry was held by the endpoint's pause (one window)
        assert time.monotonic() - t0 >= 0.4 and sleeps == [0.5] and len(seen) == 2
    after = counter("okx_rest_wait_seconds_total", endpoint="/market/history-trades")
    assert after - waited >= 0.39


def test_network_errors_are_retried_and_end_in_a_rest_error_without_secrets():
    with scripted(("close", b"")) as (url, seen):
        c, sleeps = client(url, max_retries=2)
        with pytest.raises(RestError) as info:
            c.get("/api/v5/account/balance", {"ccy": "BTC"}, signed=True)
    assert len(seen) == 3 and len(sleeps) == 2
    text = str(info.value) + repr(info.value) + repr(c)
    assert SECRET not in text and PASSPHRASE not in text and "OK-ACCESS" not in text


def test_signed_requests_carry_the_signature_and_the_demo_header_and_hide_secrets():
    echo = okx("50113", f"Invalid Sign for {PASSPHRASE} and {SECRET}")  # a hostile echo
    with scripted(ok([{"x": "1"}]), echo) as (url, seen):
        c, _ = client(url, demo=True)
        c.get("/api/v5/account/balance", {"ccy": "BTC"}, signed=True)
        with pytest.raises(RestError) as info:
            c.get("/api/v5/account/balance", signed=True)
    headers = {k.lower(): v for k, v in seen[0][1].items()}  # HTTP names are case-blind
    assert seen[0][0] == "/api/v5/account/balance?ccy=BTC"
    assert headers["ok-access-key"] == "key-12345678" and headers["ok-access-sign"]
    assert headers["ok-access-passphrase"] == PASSPHRASE and headers["ok-access-timestamp"]
    assert headers["x-simulated-trading"] == "1"
    assert SECRET not in str(info.value) and PASSPHRASE not in str(info.value)
    assert info.value.code == "50113"


def test_a_signed_call_without_credentials_fails_before_sending():
    with scripted(ok([])) as (url, seen):
        with pytest.raises(RestError, match="credentials"):
            RestClient(url, limits=False).get("/api/v5/account/balance", signed=True)
        assert seen == []


def test_an_oversized_reply_is_refused(monkeypatch):
    import okx.rest.client as rest

    monkeypatch.setattr(rest, "MAX_BODY", 100)
    with scripted(ok([{"a": "x" * 200}])) as (url, _):
        with pytest.raises(RestError, match="larger than"):
            client(url)[0].get("/api/v5/market/tickers")


def test_default_client_uses_the_shared_limits_and_false_disables_them():
    from core.rest_limits import shared_limits

    assert RestClient("http://x").limits is shared_limits()
    assert isinstance(RestClient("http://x", limits=False).limits, NoLimits)


# ----- against okxsim ----------------------------------------------------------------------------

OKXSIM_CREDS = Credentials("okxsim-key", "okxsim-secret", "okxsim-pass")


@pytest.fixture(scope="module")
def sim():
    from okxsim import OkxSim

    with OkxSim(
        port=0, rate=30, seed=11, instruments=("BTC-USDT", "ETH-USDT"), bot_interval_s=0.05
    ) as s:
        yield s


def sim_get(sim, path: str):
    with urllib.request.urlopen(sim.rest_url + path, timeout=5) as r:
        return orjson.loads(r.read())["data"]


def sim_fault(sim, body: dict) -> None:
    req = urllib.request.Request(
        sim.rest_url + "/sim/faults", data=orjson.dumps(body), method="POST"
    )
    urllib.request.urlopen(req, timeout=5).read()


@pytest.mark.integration
def test_trades_between_two_trade_ids_equal_okxsim_truth_exactly(sim):
    from tests.polling import wait_for

    truth = wait_for(
        lambda: (t := sim_get(sim, "/sim/truth/trades?instId=BTC-USDT")) and len(t) > 700 and t,
        timeout=30,
        what="700 trades in okxsim",
    )
    lower, upper = truth[40]["tradeId"], truth[-30]["tradeId"]
    c = RestClient(sim.rest_url, limits=RateLimits())
    pages = list(history.trades(c, "BTC-USDT", lower_id=lower, upper_id=upper))
    got = sorted((r for p in pages for r in p.records), key=lambda r: int(r["tradeId"]))
    want = [t for t in truth if int(lower) < int(t["tradeId"]) < int(upper)]
    assert [(r["tradeId"], r["px"], r["sz"], r["side"], r["ts"]) for r in got] == [
        (t["tradeId"], t["px"], t["sz"], t["side"], t["ts"]) for t in want
    ]
    assert pages[-1].cursor is None and len(got) > 600


@pytest.mark.integration
def test_signed_snapshots_and_fills_match_okxsim_truth(sim):
    from tests.polling import wait_for

    wait_for(lambda: len(sim_get(sim, "/sim/truth/fills")) >= 5, timeout=30, what="5 fills")
    c = RestClient(sim.rest_url, credentials=OKXSIM_CREDS, limits=RateLimits())
    now = int(time.time() * 1000) + 60_000
    truth = sim_get(sim, "/sim/truth/fills")  # before: the bot keeps trading meanwhile
    fills = [
        r
        for kind in ("SPOT", "MARGIN")
        for p in history.fills(c, kind, 0, now, now_ms=now)
        for r in p.records
    ]
    assert {f["billId"] for f in truth} <= {f["billId"] for f in fills}
    assert len({f["billId"] for f in fills}) == len(fills)
    orders = [r for p in history.orders(c, "SPOT", 0, now, now_ms=now) for r in p.records]
    assert orders and len({o["ordId"] for o in orders}) == len(orders)
    balances = {b["ccy"]: b["cashBal"] for b in history.balances(c)}
    assert set(balances) >= {"BTC", "USDT"}
    assert all(b["source"] == "rest" for b in history.balances(c))
    assert history.book(c, "ETH-USDT", 50)["seqId"] is not None

    wrong = RestClient(
        sim.rest_url,
        credentials=Credentials("okxsim-key", "nope", "okxsim-pass"),
        limits=False,
        sleep=lambda s: pytest.fail("retried an auth error"),
    )
    with pytest.raises(RestError) as info:
        history.balances(wrong)
    assert info.value.code.startswith("501") and "nope" not in str(info.value)


@pytest.mark.integration
def test_a_50011_storm_is_survived_by_retries(sim):
    sim_fault(sim, {"kind": "rate_limit", "seconds": 1.0})
    before = counter("okx_rest_rate_limited_total", endpoint="/market/books")
    c = RestClient(sim.rest_url, limits=RateLimits(), max_retries=5)
    assert history.book(c, "BTC-USDT", 5)["asks"]
    assert counter("okx_rest_rate_limited_total", endpoint="/market/books") - before >= 1


@pytest.mark.integration
def test_an_unpaced_client_over_the_limit_recovers_by_backing_off(sim):
    # 30 requests at once against 20 / 2 s in strict mode: okxsim rejects some, retries finish
    before = counter("okx_rest_rate_limited_total", endpoint="/market/history-candles")
    c = RestClient(sim.rest_url, limits=False, max_retries=6)
    for _ in range(30):
        c.get("/api/v5/market/history-candles", {"instId": "ETH-USDT", "bar": "1m"}, row_type=list)
    assert counter("okx_rest_rate_limited_total", endpoint="/market/history-candles") > before


@pytest.mark.integration
def test_paced_backfill_far_over_the_limit_gets_no_50011(sim):
    # 60 history-trades requests against 20 / 2 s: three windows' worth. With max_retries=0 a
    # single 50011 from okxsim (strict sliding window) fails the test.
    limits = RateLimits()
    c = RestClient(sim.rest_url, limits=limits, max_retries=0)
    before = counter("okx_rest_requests_total", endpoint="/market/history-trades", outcome="ok")
    t0 = time.monotonic()
    threads = [
        threading.Thread(
            target=lambda: [c.get(history.TRADES_PATH, {"instId": "BTC-USDT"}) for _ in range(15)]
        )
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    done = counter("okx_rest_requests_total", endpoint="/market/history-trades", outcome="ok")
    assert done - before == 60
    # pacing arithmetic: 20 at once, then 40 more at no more than the paced rate
    assert elapsed >= 40 / limits.rate(history.TRADES_PATH) - 0.05
    assert limits.rate(history.TRADES_PATH) >= 0.9 * 20 / 2
