"""The dashboard page on its own: the router's files, and the page in a real headless chromium
against a small fixture API that answers the contract's JSON (docs/dashboard.md).

The fixture pins what the live stack cannot make happen on cue: every gap status, a paged reply
that needs its cursor followed, an instrument with OKX candles only, a token instead of Basic
credentials, a refused login, and data that changes under the open page. The end-to-end test
against `python -m web` and a running collector is tests/test_dashboard_browser.py; both read
the page with `read_dashboard`.
"""

from __future__ import annotations

import base64
import re
import socket
import threading
import time
from pathlib import Path

import pytest
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient

from tests.conftest import IN_CI
from tests.polling import wait_for
from web.dashboard import STATIC_DIR, build_router, router, static_files

CHROMIUM = Path("/usr/bin/chromium")
USER, PASSWORD, TOKEN = "ops", "s3cret-pass", "tok-123"
T = int(time.time() * 1000) // 60_000 * 60_000  # this minute: the page's window ends at "now"
# when an instrument has no trade or ticker time


# ----- the router ----------------------------------------------------------------------------------


def test_the_page_and_its_files_are_served_with_a_no_cdn_policy():
    app = FastAPI()
    app.include_router(router)
    client = TestClient(app)
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for name in ("dashboard.js", "charts.js", "dashboard.css"):
        assert f"/static/{name}" in page.text
        reply = client.get(f"/static/{name}")
        assert reply.status_code == 200 and reply.content == (STATIC_DIR / name).read_bytes()
    assert client.get("/static/dashboard.js").headers["content-type"].startswith("text/javascript")


@pytest.mark.parametrize(
    "path", ["/static/nope.js", "/static/..%2Fdashboard.py", "/static/../dashboard.py", "/static/"]
)
def test_only_the_files_of_the_static_directory_are_served(path):
    app = FastAPI()
    app.include_router(router)
    assert TestClient(app).get(path).status_code == 404


def test_the_table_holds_only_known_file_types(tmp_path):
    (tmp_path / "a.js").write_text("1")
    (tmp_path / "secret.env").write_text("KEY=1")
    (tmp_path / "sub").mkdir()
    files = static_files(tmp_path)
    assert set(files) == {"a.js"} and files["a.js"][1].startswith("text/javascript")
    app = FastAPI()
    app.include_router(build_router(files))
    client = TestClient(app)
    assert client.get("/").status_code == 404  # no index.html in this table
    assert client.get("/static/secret.env").status_code == 404


def test_the_web_app_serves_the_page_without_credentials_and_the_data_only_with():
    import fakeredis
    import mongomock

    from tests.web_fixtures import BEARER, app_for

    client = TestClient(
        app_for(fakeredis.FakeRedis(decode_responses=True), mongomock.MongoClient().db)
    )
    assert client.get("/").status_code == 200 and "dashboard.js" in client.get("/").text
    assert client.get("/static/charts.js").status_code == 200
    assert client.get("/api/v1/instruments").status_code == 401
    assert client.get("/api/v1/instruments", headers=BEARER).json() == {"items": []}
    missing = client.get("/static/missing.js")
    assert missing.status_code == 404 and missing.json() == {"error": "no static file 'missing.js'"}


def test_the_page_loads_nothing_from_elsewhere():
    # No CDN: every src/href of the page is a path of this origin, and the scripts fetch only
    # /api/v1 paths (the one absolute URL allowed is the SVG namespace, which loads nothing).
    html = (STATIC_DIR / "index.html").read_text()
    for ref in re.findall(r'(?:src|href)="([^"]*)"', html):
        assert ref.startswith("/") and not ref.startswith("//") or ref == "data:,", ref
    for name in ("dashboard.js", "charts.js"):
        urls = re.findall(r"\w+://[^\s\"'`]*", (STATIC_DIR / name).read_text())
        assert set(urls) <= {"http://www.w3.org/2000/svg"}, (name, urls)


# ----- reading the page back -----------------------------------------------------------------------


def read_dashboard(page) -> dict:
    """Every number the page shows, from its data attributes (the API's strings as sent)."""
    return page.evaluate(
        """() => {
        const v = (sel, attr = 'value') => document.querySelector(sel).dataset[attr];
        const gaps = {};
        for (const s of ['open', 'filling', 'failed', 'filled', 'unrepairable', 'total'])
          gaps[s] = Number(v('#gaps-' + s, 'count'));
        return {
          refreshes: Number(document.body.dataset.refreshes),
          status: v('#status', 'state'),
          verdict: v('#verdict', 'verdict'),
          instrument: document.querySelector('#instrument').value,
          instruments: [...document.querySelectorAll('#instrument option')].map(o => o.value),
          last: v('#last-price'),
          vwap: v('#vwap-latest'),
          vwap_validated: v('#vwap-validated'),
          vwap_count: Number(v('#vwap-count')),
          vwap_ts: v('#vwap-latest', 'ts'),
          vwap_points: Number(document.querySelector('#vwap-line')?.dataset.points || 0),
          vwap_first_ts: document.querySelector('#vwap-line')?.dataset.firstTs || '',
          vwap_last_ts: document.querySelector('#vwap-line')?.dataset.lastTs || '',
          candle_count: Number(v('#candle-count')),
          candle_source: v('#candle-source'),
          chart_start: v('#candle-chart', 'start'),
          vwap_start: v('#candle-chart', 'vwapStart'),
          candles: [...document.querySelectorAll('#candle-chart g.candle')].map(g => ({
            ts: g.dataset.ts, o: g.dataset.o, h: g.dataset.h, l: g.dataset.l, c: g.dataset.c,
            vol: g.dataset.vol})),
          trades: [...document.querySelectorAll('#trades tbody tr')].map(r => ({
            tradeId: r.dataset.tradeId,
            px: r.querySelector('[data-field=px]').textContent,
            sz: r.querySelector('[data-field=sz]').textContent,
            side: r.querySelector('[data-field=side]').textContent,
            ts: r.querySelector('[data-field=ts]').dataset.value})),
          gaps,
          gap_bars: [...document.querySelectorAll('#gap-timeline rect.gap')].map(
            r => [r.dataset.gapId, r.dataset.status]),
          connections: Object.fromEntries([...document.querySelectorAll('#connections tr.conn')]
            .map(r => [r.dataset.conn, r.dataset.state])),
          subscriptions: Object.fromEntries([...document.querySelectorAll('#connections tr.sub')]
            .map(r => [r.dataset.sub, r.dataset.ageMs])),
        };
    }"""
    )


def wait_refreshed(page, after: int, timeout: float = 20.0) -> dict:
    """The page's state once it has finished a refresh that started after `after` refreshes."""
    return wait_for(
        lambda: (lambda s: s if s["refreshes"] > after + 1 else None)(read_dashboard(page)),
        timeout=timeout,
        what=f"a dashboard refresh after #{after}",
    )


@pytest.fixture(scope="module")
def chromium():
    """Debian's chromium driven by playwright (never a downloaded browser). Missing: skip
    locally, fail under CI (./dev.sh test installs it: ensure_chromium)."""
    if not CHROMIUM.exists():
        if IN_CI:
            pytest.fail(f"{CHROMIUM} is missing (./dev.sh setup installs Debian's chromium)")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield browser
        browser.close()


class PageWatch:
    """What a page did besides rendering: console errors and requests that left its origin."""

    def __init__(self, page, origin: str) -> None:
        self.errors: list[str] = []
        self.foreign: list[str] = []
        # A 404 (nothing stored yet) is an answer the page handles, not an error of the page;
        # script errors and refused loads (the CSP) are.
        page.on(
            "console",
            lambda m: (
                m.type == "error"
                and not m.text.startswith("Failed to load resource")
                and self.errors.append(m.text)
            ),
        )
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("request", lambda r: r.url.startswith(origin) or self.foreign.append(r.url))


# ----- the fixture API: the contract's shapes, data the test controls -------------------------------


def _trade(i: int) -> dict:
    return {
        "tradeId": str(1000 + i),
        "px": f"3500{i % 10}.{i}",
        "sz": f"0.0{i % 9 + 1}",
        "side": "buy" if i % 2 else "sell",
        "ts": str(T + 1000 * i),
    }


def _candle(i: int, source: str, close: str) -> dict:
    return {
        "ts": str(T - 60_000 * (9 - i)),
        "o": "35000",
        "h": f"350{20 + i}",
        "l": f"349{80 - i}",
        "c": close,
        "vol": f"{i + 1}.5",
        "volCcy": "1",
        "complete": i != 9,
        "final": i < 9,
        "source": source,
    }


def fixture_data() -> dict:
    statuses = ["open", "open", "filling", "failed", "filled", "filled", "filled", "unrepairable"]
    return {
        "instruments": ["BTC-USDT", "ETH-USDT"],
        "health": {
            "verdict": "degraded",
            "reasons": ["business: connecting"],
            "feeder": {
                "connections": [
                    {
                        "name": "public",
                        "state": "live",
                        "subscriptions": [
                            {"channel": "trades", "instId": "BTC-USDT", "age_ms": 120},
                            {"channel": "tickers", "instId": "ETH-USDT", "age_ms": 15000},
                        ],
                    },
                    {
                        "name": "business",
                        "state": "connecting",
                        "subscriptions": [
                            {"channel": "candle1m", "instId": "BTC-USDT", "age_ms": None}
                        ],
                    },
                ]
            },
            "workers": {},
        },
        "gaps": [
            {
                "id": f"g{i}",
                "channel": "trades" if i % 2 else "books",
                "instId": "BTC-USDT",
                "start": T - 600_000 + 60_000 * i,
                "end": T - 590_000 + 60_000 * i,
                "status": status,
                "reason": "no REST history for books" if status == "unrepairable" else "",
            }
            for i, status in enumerate(statuses)
        ],
        "ticker": {"BTC-USDT": {"instId": "BTC-USDT", "last": "35012.3", "ts": str(T + 30_000)}},
        "trades": {"BTC-USDT": [_trade(i) for i in range(30, 0, -1)]},
        "candles": {
            ("BTC-USDT", "trades"): [_candle(i, "trades", f"3501{i}.5") for i in range(10)],
            ("BTC-USDT", "okx"): [_candle(i, "okx", "1") for i in range(10)],
            ("ETH-USDT", "okx"): [_candle(i, "okx", f"200{i}") for i in range(5, 10)],
            # 5m bars from trades: the oldest lies before a 5m chart's 60-bar window
            ("BTC-USDT", "trades", "5m"): [
                {**_candle(0, "trades", f"3505{i}"), "ts": str(T - 300_000 * i)}
                for i in (70, 3, 2, 1, 0)
            ],
        },
        "vwap": {
            "BTC-USDT": [
                {"ts": T - 300_000 + 10_000 * i, "vwap": f"3500{i % 10}.25", "validated": i < 20}
                for i in range(25)
            ]
        },
    }


def fixture_app(data: dict) -> FastAPI:
    """The dashboard router plus /api/v1 answering `data` in the contract's shapes. Pages hold 3
    items whatever the limit, so the page must follow `next`."""

    def auth(request: Request) -> None:
        header = request.headers.get("authorization", "")
        basic = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        if header not in (basic, f"Bearer {TOKEN}"):
            raise HTTPException(401, "authentication required", {"WWW-Authenticate": "Basic"})

    def paged(items: list, cursor: str | None) -> dict:
        at = int(cursor or 0)
        return {"items": items[at : at + 3], "next": str(at + 3) if at + 3 < len(items) else None}

    app = FastAPI()
    app.include_router(router)
    guarded = [Depends(auth)]

    @app.get("/api/v1/health")
    def health():  # like the real one: 503 unless the verdict is "ok"
        return JSONResponse(data["health"], 200 if data["health"]["verdict"] == "ok" else 503)

    @app.get("/api/v1/instruments", dependencies=guarded)
    def instruments():
        return {"items": data["instruments"]}

    @app.get("/api/v1/gaps", dependencies=guarded)
    def gaps(cursor: str | None = None):
        return paged(data["gaps"], cursor)

    @app.get("/api/v1/ticker/{inst}", dependencies=guarded)
    def ticker(inst: str):
        if inst not in data["ticker"]:
            raise HTTPException(404, f"no ticker for {inst}")
        return data["ticker"][inst]

    @app.get("/api/v1/trades/{inst}/latest", dependencies=guarded)
    def latest(inst: str, limit: int = 100):
        return {"items": data["trades"].get(inst, [])[:limit]}

    @app.get("/api/v1/candles/{inst}", dependencies=guarded)
    def candles(inst: str, bar: str, source: str, start: int, cursor: str | None = None):
        series = data["candles"].get((inst, source) if bar == "1m" else (inst, source, bar), [])
        items = [c for c in series if int(c["ts"]) >= start]
        return paged(items, cursor)

    @app.get("/api/v1/vwap/{inst}", dependencies=guarded)
    def vwap(inst: str):
        if not data["vwap"].get(inst):
            raise HTTPException(404, f"no VWAP for {inst}")
        return {**data["vwap"][inst][-1], "n": 5}

    @app.get("/api/v1/vwap/{inst}/range", dependencies=guarded)
    def vwap_range(inst: str, start: int, cursor: str | None = None):
        return paged([v for v in data["vwap"].get(inst, []) if v["ts"] >= start], cursor)

    return app


@pytest.fixture
def fixture_site():
    """The fixture app on a real socket (uvicorn in a thread): (base URL, its mutable data)."""
    import uvicorn

    data = fixture_data()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(fixture_app(data), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_for(lambda: server.started, timeout=10, what="the fixture API to listen")
    yield f"http://127.0.0.1:{port}", data
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


# ----- the page in chromium ------------------------------------------------------------------------


@pytest.mark.integration
def test_the_page_shows_the_apis_numbers_and_follows_changes(chromium, fixture_site, tmp_path):
    base, data = fixture_site
    context = chromium.new_context(
        http_credentials={"username": USER, "password": PASSWORD},
        viewport={"width": 1400, "height": 900},
    )
    page = context.new_page()
    watch = PageWatch(page, base)
    page.goto(base + "/")
    shown = wait_refreshed(page, 0)

    assert shown["status"] == "ok" and shown["verdict"] == "degraded"
    assert shown["instruments"] == ["BTC-USDT", "ETH-USDT"] and shown["instrument"] == "BTC-USDT"
    assert shown["last"] == "35012.3"
    assert shown["trades"] == data["trades"]["BTC-USDT"][:20]  # newest first, 20 shown
    # candles from trades win over OKX's; every one of the window drawn with the API's strings
    assert shown["candle_source"] == "trades" and shown["candle_count"] == 10
    keys = ("ts", "o", "h", "l", "c", "vol")
    assert shown["candles"] == [
        {k: c[k] for k in keys} for c in data["candles"][("BTC-USDT", "trades")]
    ]
    assert int(shown["vwap_start"]) >= int(shown["chart_start"])
    window_vwap = [v for v in data["vwap"]["BTC-USDT"] if v["ts"] >= int(shown["vwap_start"])]
    assert shown["vwap_count"] == shown["vwap_points"] == len(window_vwap) == 25
    assert shown["vwap"] == "35004.25" and shown["vwap_validated"] == "false"
    assert shown["vwap_ts"] == str(window_vwap[-1]["ts"])
    assert [shown["vwap_first_ts"], shown["vwap_last_ts"]] == [
        str(window_vwap[0]["ts"]),
        str(window_vwap[-1]["ts"]),
    ]
    # gaps: 8 over 3 pages, every status counted and drawn
    assert shown["gaps"] == {
        "open": 2,
        "filling": 1,
        "failed": 1,
        "filled": 3,
        "unrepairable": 1,
        "total": 8,
    }
    assert sorted(shown["gap_bars"]) == sorted([g["id"], g["status"]] for g in data["gaps"])
    assert shown["connections"] == {"public": "live", "business": "connecting"}
    assert shown["subscriptions"] == {
        "public|trades|BTC-USDT": "120",
        "public|tickers|ETH-USDT": "15000",
        "business|candle1m|BTC-USDT": "",
    }
    page.screenshot(path=str(tmp_path / "dashboard-fixture.png"), full_page=True)

    # Live: new data appears within a poll or two, in the same document (no reload).
    page.evaluate("window.__same_document = true")
    data["ticker"]["BTC-USDT"]["last"] = "35099.9"
    data["trades"]["BTC-USDT"].insert(0, _trade(31))
    data["gaps"][0]["status"] = "filled"
    data["health"]["feeder"]["connections"][1]["state"] = "live"
    shown = wait_for(
        lambda: (lambda s: s if s["last"] == "35099.9" else None)(read_dashboard(page)),
        timeout=10,
        what="the new last price",
    )
    shown = wait_refreshed(page, shown["refreshes"])
    assert shown["trades"][0] == _trade(31) and len(shown["trades"]) == 20
    assert shown["gaps"]["open"] == 1 and shown["gaps"]["filled"] == 4
    assert shown["connections"]["business"] == "live"
    assert page.evaluate("window.__same_document") is True

    # Another instrument: OKX's candles when none were built from trades, no ticker yet.
    page.select_option("#instrument", "ETH-USDT")
    shown = wait_for(
        lambda: (lambda s: s if s["candle_source"] == "okx" else None)(read_dashboard(page)),
        timeout=10,
        what="ETH-USDT's candles",
    )
    assert shown["candle_count"] == 5 and [c["c"] for c in shown["candles"]] == [
        f"200{i}" for i in range(5, 10)
    ]
    assert shown["last"] == "" and shown["trades"] == [] and shown["vwap_count"] == 0

    # Back to BTC-USDT on 5m bars: a window of sixty 5m bars ending at the newest trade's bar.
    page.select_option("#instrument", "BTC-USDT")
    page.select_option("#bar", "5m")
    shown = wait_for(
        lambda: (lambda s: s if s["candles"] and s["candles"][0]["c"].startswith("3505") else None)(
            read_dashboard(page)
        ),
        timeout=10,
        what="BTC-USDT's 5m candles",
    )
    newest = max(int(data["ticker"]["BTC-USDT"]["ts"]), int(data["trades"]["BTC-USDT"][0]["ts"]))
    assert int(shown["chart_start"]) == newest // 300_000 * 300_000 - 59 * 300_000
    assert [c["c"] for c in shown["candles"]] == ["35053", "35052", "35051", "35050"]
    assert page.evaluate("location.hash") == "#inst=BTC-USDT"
    assert watch.errors == [] and watch.foreign == []
    context.close()


@pytest.mark.integration
def test_a_token_replaces_basic_credentials_and_a_refusal_is_shown(chromium, fixture_site):
    base, _data = fixture_site
    # Wrong Basic credentials (with none, headless chromium waits on the login prompt forever).
    context = chromium.new_context(http_credentials={"username": USER, "password": "wrong"})
    page = context.new_page()
    page.goto(base + "/")
    shown = wait_refreshed(page, 0)
    assert shown["status"] == "unauthorized"
    assert shown["verdict"] == "degraded"  # /health is public
    assert shown["last"] == "" and shown["trades"] == []

    page.fill("#token", TOKEN)
    page.click("#token-save")
    shown = wait_for(
        lambda: (lambda s: s if s["status"] == "ok" else None)(read_dashboard(page)),
        timeout=10,
        what="the page to use the token",
    )
    shown = wait_refreshed(page, shown["refreshes"])
    assert shown["last"] == "35012.3" and shown["candle_count"] == 10
    assert page.input_value("#token") == ""  # the token is not left in the field
    assert TOKEN not in page.content()
    context.close()
