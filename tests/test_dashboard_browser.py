"""The dashboard's acceptance test (issue #17): the page in a real headless chromium against a
running collector, showing the numbers the API answers.

The stack is the one a deployment runs: okxsim, a real redis-server, the wire-protocol MongoDB,
the Procfile's `release`, then `feeder`, `worker` and `beat` (localrun/procfile.py), and
`python -m web` as its own process on a free port (Flower off: not under test here). A drop of
every socket makes gaps for backfill to repair (trades: filled; books have no REST history:
unrepairable). Then okxsim's market is paused, so that trades and prices hold still while the
page and the API are compared: the test reads the page after a refresh, asks the API the same
questions, and polls until the two agree (candles and gap statuses may still move between two
reads; a wrong page never agrees). The screenshot goes to docs/img/dashboard.png (linked from
docs/dashboard.md and the README) and to the test's tmp dir.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from localrun.demo import demo_env
from localrun.procfile import PROCFILE, read_procfile
from localrun.redis_server import free_port
from tests.polling import wait_for
from tests.test_dashboard_page import PageWatch, chromium, read_dashboard, wait_refreshed

__all__ = ["chromium"]  # the fixture, shared with the fixture-API tests

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOT = ROOT / "docs" / "img" / "dashboard.png"
INSTRUMENTS = ("BTC-USDT", "ETH-USDT")
CHANNELS = "books,books5,trades-all,tickers,candle1m"
USER = "demo"
TRADES_SHOWN = 20
TOKEN = "dashboard-test-token-" + secrets.token_urlsafe(8)


class Api:
    """The read API as the test asks it: same credentials as the page, JSON back."""

    def __init__(self, base: str, user: str, password: str) -> None:
        self.base = base
        raw = base64.b64encode(f"{user}:{password}".encode()).decode()
        self.headers = {"Authorization": f"Basic {raw}"}

    def get(self, path: str, **params: str) -> tuple[int, dict]:
        query = "&".join(f"{k}={v}" for k, v in params.items())
        url = f"{self.base}/api/v1/{path}" + (f"?{query}" if query else "")
        req = urllib.request.Request(url, headers=self.headers)
        try:
            with urllib.request.urlopen(req, timeout=10) as reply:
                return reply.status, json.loads(reply.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    def json(self, path: str, **params: str) -> dict:
        status, body = self.get(path, **params)
        assert status == 200, (path, status, body)
        return body

    def every(self, path: str, **params: str) -> list[dict]:
        items, cursor = [], None
        while True:
            page = self.json(path, **params, **({"cursor": cursor} if cursor else {}))
            items += page["items"]
            cursor = page["next"]
            if not cursor:
                return items


def what_the_api_says(api: Api, inst: str, start: str) -> dict:
    """The API's answers to the page's questions, in the shape `shown_numbers` gives."""
    status, health = api.get("health")
    assert status in (200, 503), (status, health)
    candles = api.every(f"candles/{inst}", bar="1m", source="trades", start=start, limit="1000")
    source = "trades" if candles else "okx"
    if not candles:
        candles = api.every(f"candles/{inst}", bar="1m", source="okx", start=start, limit="1000")
    gaps = api.every("gaps", limit="1000")
    trades = api.json(f"trades/{inst}/latest", limit=str(TRADES_SHOWN))["items"]
    ticker = api.json(f"ticker/{inst}")
    # the window: 60 bars up to the exchange's newest time (its ticker's or trade's)
    newest = max([int(ticker["ts"])] + [int(t["ts"]) for t in trades])
    statuses = ("open", "filling", "failed", "filled", "unrepairable")
    return {
        "verdict": health["verdict"],
        "connections": {c["name"]: c["state"] for c in health["feeder"]["connections"]},
        "last": ticker["last"],
        "trades": [{k: t[k] for k in ("tradeId", "px", "sz", "side", "ts")} for t in trades],
        "chart_start": str(newest // 60_000 * 60_000 - 59 * 60_000),
        "candle_source": source if candles else "",
        "candle_count": len(candles),
        "candles": [{k: c[k] for k in ("ts", "o", "h", "l", "c", "vol")} for c in candles],
        "gaps": {
            **{s: sum(g["status"] == s for g in gaps) for s in statuses},
            "total": len(gaps),
        },
    }


def shown_numbers(shown: dict) -> dict:
    keys = ("verdict", "connections", "last", "trades", "chart_start", "candle_source")
    keys += ("candle_count",)
    return {**{k: shown[k] for k in keys}, "candles": shown["candles"], "gaps": shown["gaps"]}


def _post(url: str, body: dict) -> dict:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=5) as reply:
        return json.loads(reply.read())


def _newest_trade_id(sim, inst: str) -> str | None:
    url = f"{sim.rest_url}/api/v5/market/trades?instId={inst}&limit=1"
    with urllib.request.urlopen(url, timeout=5) as reply:
        rows = json.loads(reply.read())["data"]
    return rows[0]["tradeId"] if rows else None


def _tail(path: Path, n: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return f"({path} not written)"


def _stop(proc: subprocess.Popen | None, grace_s: float = 30) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


@pytest.mark.integration
def test_the_dashboard_shows_what_the_api_says_about_a_running_collector(
    chromium, redis_url, mongodb_uri, tmp_path
):
    from okxsim import OkxSim, SimConfig

    # A quick market (a simulated minute every 6 s: OKX's 1m candles confirm often) on two
    # instruments, no simulated account (the page shows no account data).
    sim = OkxSim(
        SimConfig(port=0, instruments=INSTRUMENTS, tick_ms=50, clock_speed=10, bot_interval_s=0)
    ).start()
    password = "pw-" + secrets.token_urlsafe(12)
    web_port = free_port()
    env = demo_env(
        redis_url=redis_url,
        mongo_uri=mongodb_uri,
        sim=sim,
        health_port=free_port(),
        web_port=web_port,
        web_password=password,
    )
    env.update(
        OKX_INSTRUMENTS=",".join(INSTRUMENTS),
        OKX_CHANNELS=CHANNELS,
        FEEDER_ID="dashboard-feeder",
        WEB_FLOWER="0",
        WEB_API_TOKEN=TOKEN,
        BACKFILL_SWEEP_S="2",
    )
    stack_log, web_log = tmp_path / "processes.log", tmp_path / "web.log"
    stack = web = None
    try:
        release = subprocess.run(
            read_procfile()["release"], shell=True, cwd=ROOT, env=env, capture_output=True,
            text=True, timeout=60,
        )  # fmt: skip
        assert release.returncode == 0, release.stderr
        stack = subprocess.Popen(
            [sys.executable, "-m", "localrun.procfile", "--procfile", str(PROCFILE),
             "--log", str(stack_log), "feeder", "worker", "beat"],
            cwd=ROOT, env=env, start_new_session=True,
        )  # fmt: skip
        with open(web_log, "wb") as out:
            web = subprocess.Popen(
                [sys.executable, "-m", "web"], cwd=ROOT, env=env, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        base = f"http://127.0.0.1:{web_port}"
        api = Api(base, USER, password)
        logs = lambda: f"\nweb:\n{_tail(web_log)}\nstack:\n{_tail(stack_log)}"

        def live_connections() -> bool:
            assert web.poll() is None and stack.poll() is None, "a process exited" + logs()
            try:
                status, health = api.get("health")
            except OSError:
                return False  # not listening yet
            conns = health.get("feeder", {}).get("connections", [])
            return bool(conns) and all(c["state"] == "live" for c in conns)

        wait_for(live_connections, 90, interval=0.5, what="the feeder live" + logs())
        inst = INSTRUMENTS[0]
        wait_for(
            lambda: (
                api.get(f"ticker/{inst}")[0] == 200
                and len(api.json(f"trades/{inst}/latest", limit="20")["items"]) == TRADES_SHOWN
            ),
            60,
            interval=0.5,
            what="trades and a ticker through the API" + logs(),
        )

        # Gaps to show: drop every socket; backfill repairs what REST has.
        _post(f"{sim.rest_url}/sim/faults", {"kind": "drop"})
        wait_for(
            lambda: api.every("gaps", limit="1000") and live_connections(),
            60,
            interval=0.5,
            what="the drop's gaps and the feeder live again" + logs(),
        )
        wait_for(
            lambda: any(g["status"] == "filled" for g in api.every("gaps", limit="1000")),
            90,
            interval=0.5,
            what="a gap filled by backfill" + logs(),
        )

        # Some bars to draw (either source: candles from trades when the workers build them).
        def candles_in_the_api() -> int:
            for source in ("trades", "okx"):
                found = api.every(f"candles/{inst}", bar="1m", source=source, limit="1000")
                if found:
                    return len(found)
            return 0

        wait_for(lambda: candles_in_the_api() >= 6, 90, interval=1, what="six 1m candles" + logs())

        # Hold the market still, and wait until the last trade okxsim made is stored.
        _post(f"{sim.rest_url}/sim/faults", {"kind": "pause", "seconds": 45})
        # (okxsim asked each time: a tick under way when the pause came may still trade; the
        # latest trades come newest first by time, so compare the highest id, not the first)
        wait_for(
            lambda: (
                max(
                    int(t["tradeId"])
                    for t in api.json(f"trades/{inst}/latest", limit=str(TRADES_SHOWN))["items"]
                )
                == int(_newest_trade_id(sim, inst))
            ),
            30,
            interval=0.3,
            what="the paused market's last trade through the API" + logs(),
        )

        context = chromium.new_context(
            http_credentials={"username": USER, "password": password},
            viewport={"width": 1400, "height": 900},
        )
        page = context.new_page()
        watch = PageWatch(page, base)
        page.goto(f"{base}/#inst={inst}")
        last: dict = {}

        def data_on_the_page() -> dict | None:
            last.update(read_dashboard(page))
            return dict(last) if last["candle_count"] >= 2 and last["trades"] else None

        try:
            shown = wait_for(data_on_the_page, 60, interval=0.2)
        except AssertionError:
            raise AssertionError(f"no candles and trades on the page: {last}" + logs()) from None
        assert shown["status"] == "ok" and shown["instrument"] == inst
        assert shown["instruments"] == sorted(INSTRUMENTS)

        seen: dict = {}

        def page_agrees_with_api() -> bool:
            shown = wait_refreshed(page, read_dashboard(page)["refreshes"])
            seen["page"] = shown_numbers(shown)
            seen["api"] = what_the_api_says(api, inst, shown["chart_start"])
            return seen["page"] == seen["api"]

        try:
            wait_for(page_agrees_with_api, 25, interval=0, what="the page to agree with the API")
        except AssertionError:
            assert seen["page"] == seen["api"]  # shows the difference
        numbers = seen["page"]
        assert len(numbers["trades"]) == TRADES_SHOWN and numbers["candle_count"] >= 2
        assert numbers["gaps"]["filled"] >= 1 and numbers["gaps"]["total"] >= 2
        assert set(numbers["connections"].values()) == {"live"}

        # The VWAP line: exactly the API's marks from its start to the last one drawn
        # (marks already made do not come and go; new ones may follow). Without marks (no
        # derive in the stack) the page shows none and no latest value.
        shown = read_dashboard(page)
        latest_status, latest = api.get(f"vwap/{inst}")
        assert (shown["vwap"] != "") == (latest_status == 200), (shown["vwap"], latest)
        if shown["vwap_count"]:
            marks = api.every(
                f"vwap/{inst}/range",
                start=shown["vwap_start"],
                end=str(int(shown["vwap_last_ts"]) + 1),
                limit="1000",
            )
            assert shown["vwap_count"] == shown["vwap_points"] == len(marks)
            assert str(marks[0]["ts"]) == shown["vwap_first_ts"]

        page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOT), full_page=False)
        assert watch.errors == [] and watch.foreign == []
        context.close()

        # The same page with the API token instead of the login (a wrong login first: the API
        # refuses, the page says so; then the token typed into the page opens the data).
        context = chromium.new_context(http_credentials={"username": USER, "password": "nope"})
        page = context.new_page()
        page.goto(f"{base}/#inst={inst}")
        assert wait_refreshed(page, 0)["status"] == "unauthorized"
        page.fill("#token", TOKEN)
        page.click("#token-save")
        wait_for(
            # (data, not the same data: the market's pause may be over by now)
            lambda: (lambda s: s["status"] == "ok" and len(s["trades"]) == TRADES_SHOWN)(
                read_dashboard(page)
            ),
            20,
            interval=0.2,
            what="the page opened with the token" + logs(),
        )
        assert TOKEN not in page.content()
        context.close()
    finally:
        _stop(web)
        _stop(stack)
        sim.stop()
