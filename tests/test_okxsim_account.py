"""okxsim account side: WS login, private channels, signed REST, rate limits, truth."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
from datetime import UTC, datetime

import pytest

from okxsim import OkxSim, SimConfig
from okxsim.testing import WsClient, channel, event, rest_get

pytestmark = pytest.mark.integration
KEY, SECRET, PASS = "k-test", "s-test", "p-test"


# ---- independent signing (deliberately not okxsim.signing) ---------------------------------
def b64hmac(secret: str, msg: str) -> str:
    return base64.b64encode(
        hmac.new(secret.encode(), msg.encode(), hashlib.sha256).digest()
    ).decode()


def login_msg(secret: str = SECRET, ts: str | None = None, key: str = KEY, pp: str = PASS) -> dict:
    ts = ts or str(int(time.time()))
    return {
        "op": "login",
        "args": [
            {
                "apiKey": key,
                "passphrase": pp,
                "timestamp": ts,
                "sign": b64hmac(secret, ts + "GET/users/self/verify"),
            }
        ],
    }


def rest_headers(
    path_qs: str, secret: str = SECRET, key: str = KEY, pp: str = PASS, ts: str | None = None
) -> dict:
    ts = ts or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return {
        "OK-ACCESS-KEY": key,
        "OK-ACCESS-SIGN": b64hmac(secret, ts + "GET" + path_qs),
        "OK-ACCESS-TIMESTAMP": ts,
        "OK-ACCESS-PASSPHRASE": pp,
    }


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 45))


@pytest.fixture(scope="module")
def sim():
    cfg = SimConfig(
        port=0,
        api_key=KEY,
        api_secret=SECRET,
        passphrase=PASS,
        tick_ms=25,
        bot_interval_s=0.05,
        rate=2,
        instruments=("BTC-USDT", "ETH-USDT", "DOGE-USDT"),
    )
    with OkxSim(cfg) as s:
        yield s


def test_login_good_and_bad(sim):
    async def body():
        url = sim.ws_url + "/ws/v5/private"
        async with WsClient(url) as c:
            await c.send({"op": "subscribe", "args": [{"channel": "account"}]})
            assert (await c.recv_until(event("error")))["code"] == "60011"
            await c.send(login_msg())
            ok = await c.recv()
            assert ok["event"] == "login" and ok["code"] == "0" and ok["msg"] == "" and ok["connId"]
        for bad, code in (
            (login_msg(secret="wrong"), "60007"),
            (login_msg(ts=str(int(time.time()) - 120)), "60006"),
            (login_msg(ts=str(int(time.time() * 1000))), "60004"),
            (login_msg(key="nope"), "60005"),
            (login_msg(pp="nope"), "60024"),
        ):
            async with WsClient(url) as c:
                await c.send(bad)
                err = await c.recv()
                assert err["event"] == "error" and err["code"] == code, (code, err)
                closing = await c.recv_raw()
                assert closing.type.name in ("CLOSE", "CLOSED") and c.ws.close_code == 4001

    run(body())


def test_private_channels_push_account_events_matching_truth(sim):
    async def body():
        async with WsClient(sim.ws_url + "/ws/v5/private") as c:
            await c.send(login_msg())
            await c.recv_until(event("login"))
            await c.send(
                {
                    "id": "p1",
                    "op": "subscribe",
                    "args": [
                        {"channel": "orders", "instType": "ANY"},
                        {"channel": "account"},
                        {"channel": "positions", "instType": "ANY"},
                        {"channel": "balance_and_position"},
                    ],
                }
            )
            frames: list = []
            acks = 0
            states: set[str] = set()
            deadline = time.monotonic() + 30
            while not (
                {"live", "filled", "canceled"} <= states
                and acks == 4
                and any(channel("positions")(f) for f in frames)
                and any(
                    f.get("eventType") == "event_update" for f in frames if channel("account")(f)
                )
            ):
                assert time.monotonic() < deadline, states
                m = await c.recv()
                if m.get("event") == "subscribe":
                    assert m["id"] == "p1"
                    acks += 1
                    continue
                frames.append(m)
                if channel("orders")(m):
                    states.add(m["data"][0]["state"])
        acct = [f for f in frames if channel("account")(f)]
        assert (
            acct[0]["eventType"] == "snapshot"
            and acct[0]["curPage"] == 1
            and acct[0]["lastPage"] is True
        )
        assert {"totalEq", "details", "uTime"} <= set(acct[0]["data"][0])
        bp = [f for f in frames if channel("balance_and_position")(f)]
        assert bp[0]["data"][0]["eventType"] == "snapshot"
        assert any(f["data"][0]["eventType"] == "filled" and f["data"][0]["trades"] for f in bp)
        orders = [f["data"][0] for f in frames if channel("orders")(f)]
        for o in orders:
            assert o["state"] in ("live", "partially_filled", "filled", "canceled")
            assert {"ordId", "instId", "cTime", "uTime", "accFillSz", "fillSz", "execType"} <= set(
                o
            )
        _, truth = await rest_get(sim.rest_url, "/sim/truth/orders")
        keyed = {
            (e["ordId"], e["uTime"], e["state"], e["tradeId"], e["reqId"]): e for e in truth["data"]
        }
        for o in orders:
            assert keyed[(o["ordId"], o["uTime"], o["state"], o["tradeId"], o["reqId"])] == o
        # fills are real public trades: same tradeId, instId in the market truth
        _, fills = await rest_get(sim.rest_url, "/sim/truth/fills")
        f = fills["data"][-1]
        _, trades = await rest_get(sim.rest_url, f"/sim/truth/trades?instId={f['instId']}")
        assert f["tradeId"] in {t["tradeId"] for t in trades["data"]}

    run(body())


def test_signed_rest_and_error_codes(sim):
    async def body():
        base = sim.rest_url
        p = "/api/v5/account/balance?ccy=BTC,USDT"
        st, r = await rest_get(base, p, rest_headers(p))
        assert (st, r["code"]) == (200, "0") and {d["ccy"] for d in r["data"][0]["details"]} <= {
            "BTC",
            "USDT",
        }
        h = rest_headers(p)
        del h["OK-ACCESS-KEY"]
        assert (await rest_get(base, p, h))[1]["code"] == "50103"
        h = rest_headers(p)
        del h["OK-ACCESS-SIGN"]
        assert (await rest_get(base, p, h))[1]["code"] == "50104"
        assert (await rest_get(base, p, rest_headers(p, pp="x")))[1]["code"] == "50105"
        assert (await rest_get(base, p, rest_headers(p, key="x")))[1]["code"] == "50111"
        assert (await rest_get(base, p, rest_headers(p, secret="x")))[1]["code"] == "50113"
        assert (await rest_get(base, p, rest_headers(p, ts="2020-12-08T09:08:57.715Z")))[1][
            "code"
        ] == "50102"
        # signature covers the query string
        assert (await rest_get(base, p + "x", rest_headers(p)))[1]["code"] == "50113"
        q = "/api/v5/trade/orders-history"
        assert (await rest_get(base, q, rest_headers(q)))[1]["code"] == "50014"
        for path in (
            "/api/v5/trade/orders-history?instType=SPOT",
            "/api/v5/trade/orders-history-archive?instType=SPOT",
            "/api/v5/trade/fills",
            "/api/v5/account/positions?instType=MARGIN",
        ):
            st, r = await rest_get(base, path, rest_headers(path))
            assert r["code"] == "0", (path, r)
        _, truth = await rest_get(base, "/sim/truth/fills")
        q = "/api/v5/trade/fills?limit=100"
        _, r = await rest_get(base, q, rest_headers(q))
        assert r["data"] and [int(f["billId"]) for f in r["data"]] == sorted(
            (int(f["billId"]) for f in r["data"]), reverse=True
        )
        by_bill = {f["billId"]: f for f in truth["data"]}
        assert all(by_bill[f["billId"]] == f for f in r["data"])
        q = f"/api/v5/trade/fills?after={r['data'][0]['billId']}&limit=2"
        _, r2 = await rest_get(base, q, rest_headers(q))
        assert [f["billId"] for f in r2["data"]] == [f["billId"] for f in r["data"][1:3]]

    run(body())


def test_rest_rate_limit_50011_with_429():
    with OkxSim(SimConfig(port=0, instruments=("BTC-USDT",))) as s:

        async def body():
            codes = [(await rest_get(s.rest_url, "/api/v5/public/time")) for _ in range(12)]
            assert [c[1]["code"] for c in codes[:10]] == ["0"] * 10
            assert codes[10][0] == 429 and codes[10][1]["code"] == "50011"

        run(body())
    with OkxSim(SimConfig(port=0, instruments=("BTC-USDT",), strict_limits=False)) as s:

        async def relaxed():
            codes = [
                (await rest_get(s.rest_url, "/api/v5/public/time"))[1]["code"] for _ in range(15)
            ]
            assert set(codes) == {"0"}

        run(relaxed())
