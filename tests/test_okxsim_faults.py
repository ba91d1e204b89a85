"""Each POST /sim/faults kind, seen on the wire."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
import zlib

import pytest

from okxsim import OkxSim, SimConfig
from okxsim.testing import WsClient, channel, event, rest_get, rest_post

pytestmark = pytest.mark.integration


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 45))


@pytest.fixture(scope="module")
def sim():
    cfg = SimConfig(
        port=0,
        tick_ms=25,
        rate=3,
        heartbeat_s=0.3,
        seq_reset_prob=0,
        strict_limits=False,
        instruments=("BTC-USDT", "ETH-USDT", "DOGE-USDT"),
    )
    with OkxSim(cfg) as s:
        yield s


async def fault(sim, **body):
    st, r = await rest_post(sim.rest_url, "/sim/faults", body)
    assert st == 200 and r["code"] == "0", r
    return r["data"][0]


async def books_client(sim, inst):
    c = WsClient(sim.ws_url + "/ws/v5/public")
    await c.__aenter__()
    await c.send({"op": "subscribe", "args": [{"channel": "books", "instId": inst}]})
    snap = await c.recv_until(channel("books"))
    return c, snap["data"][0]["seqId"]


def test_drop_closes_without_close_frame(sim):
    async def body():
        c, _ = await books_client(sim, "BTC-USDT")
        try:
            assert (await fault(sim, kind="drop"))["connections"] >= 1
            while True:
                raw = await c.recv_raw(timeout=5)
                if raw.type.name != "TEXT":
                    break
            assert raw.type.name in ("CLOSED", "ERROR", "CLOSE")
            assert c.ws.close_code in (None, 1006)  # no close frame from the server
        finally:
            await c.__aexit__()

    run(body())


def test_stall_stops_pushes_and_pongs(sim):
    async def body():
        c, _ = await books_client(sim, "ETH-USDT")
        try:
            await fault(sim, kind="stall", seconds=1.0)
            t0 = time.monotonic()
            await c.send("ping")
            got = []
            while time.monotonic() - t0 < 0.7:
                try:
                    got.append(await c.recv(timeout=0.75 - (time.monotonic() - t0)))
                except TimeoutError:
                    break
            # frames already in flight may land in the first few ms; nothing after that, no pong
            assert "pong" not in got and len(got) <= 3
            await c.recv_until(channel("books"), timeout=3)  # pushes resume afterwards...
            await c.send("ping")
            await c.recv_until(lambda m: m == "pong", timeout=3)  # ...and pings are answered
        finally:
            await c.__aexit__()

    run(body())


def test_gap_skips_a_books_update(sim):
    async def body():
        c, seq = await books_client(sim, "DOGE-USDT")
        try:
            for _ in range(3):
                d = (await c.recv_until(channel("books")))["data"][0]
                assert d["prevSeqId"] == seq
                seq = d["seqId"]
            await fault(sim, kind="gap", instId="DOGE-USDT")
            while True:
                d = (await c.recv_until(channel("books")))["data"][0]
                if d["prevSeqId"] != seq:
                    break
                seq = d["seqId"]
            assert d["prevSeqId"] > seq
        finally:
            await c.__aexit__()

    run(body())


def _crc(book_bids, book_asks):
    parts = []
    for i in range(25):
        if i < len(book_bids):
            parts += book_bids[i][:2]
        if i < len(book_asks):
            parts += book_asks[i][:2]
    v = zlib.crc32(":".join(parts).encode())
    return v - 2**32 if v >= 2**31 else v


def test_corrupt_sends_a_wrong_nonzero_checksum(sim):
    async def body():
        c = WsClient(sim.ws_url + "/ws/v5/public")
        await c.__aenter__()
        try:
            await c.send({"op": "subscribe", "args": [{"channel": "books", "instId": "BTC-USDT"}]})
            snap = (await c.recv_until(channel("books")))["data"][0]
            bids = {lv[0]: lv for lv in snap["bids"]}
            asks = {lv[0]: lv for lv in snap["asks"]}
            await fault(sim, kind="corrupt", instId="BTC-USDT")
            while True:
                d = (await c.recv_until(channel("books")))["data"][0]
                for side, lvls in ((bids, d["bids"]), (asks, d["asks"])):
                    for lv in lvls:
                        if lv[1] == "0":
                            side.pop(lv[0], None)
                        else:
                            side[lv[0]] = lv
                if d["checksum"] != 0:
                    break
            b = [bids[p] for p in sorted(bids, key=float, reverse=True)]
            a = [asks[p] for p in sorted(asks, key=float)]
            assert d["checksum"] != _crc(b, a)
        finally:
            await c.__aexit__()

    run(body())


def test_malformed_frames(sim):
    async def body():
        c, _ = await books_client(sim, "BTC-USDT")
        try:
            await fault(sim, kind="malformed", instId="BTC-USDT")
            kinds = set()
            while len(kinds) < 3:
                raw = await c.recv_raw()
                if raw.type.name == "BINARY":
                    kinds.add("binary")
                elif raw.data.startswith(
                    '{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"update","data":[{"as'
                ) and not raw.data.endswith("}"):
                    kinds.add("truncated")
                elif '"seqId":"8"' in raw.data:
                    kinds.add("wrong types")
        finally:
            await c.__aexit__()

    run(body())


def test_notice_then_disconnect(sim):
    async def body():
        c, _ = await books_client(sim, "ETH-USDT")
        try:
            await fault(sim, kind="notice", seconds=0.3)
            n = await c.recv_until(event("notice"))
            assert n["code"] == "64008" and n["connId"]
            while (await c.recv_raw()).type.name == "TEXT":
                pass
            assert c.ws.closed
        finally:
            await c.__aexit__()

    run(body())


def test_reject_login(sim):
    async def body():
        await fault(sim, kind="reject_login")
        ts = str(int(time.time()))
        sign = base64.b64encode(
            hmac.new(
                sim.config.api_secret.encode(),
                (ts + "GET/users/self/verify").encode(),
                hashlib.sha256,
            ).digest()
        ).decode()
        login = {
            "op": "login",
            "args": [
                {
                    "apiKey": sim.config.api_key,
                    "passphrase": sim.config.passphrase,
                    "timestamp": ts,
                    "sign": sign,
                }
            ],
        }
        async with WsClient(sim.ws_url + "/ws/v5/private") as c:
            await c.send(login)
            assert (await c.recv())["code"] == "60009"
        async with WsClient(sim.ws_url + "/ws/v5/private") as c:  # only the next login failed
            await c.send(login)
            assert (await c.recv())["code"] == "0"

    run(body())


def test_rate_limit_fault(sim):
    async def body():
        await fault(sim, kind="rate_limit", seconds=0.5)
        st, r = await rest_get(sim.rest_url, "/api/v5/market/books?instId=BTC-USDT")
        assert (st, r["code"]) == (429, "50011")
        deadline = time.monotonic() + 5
        while (await rest_get(sim.rest_url, "/api/v5/public/time"))[1]["code"] != "0":
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)

    run(body())


def test_pause_stops_one_instrument(sim):
    async def body():
        async with WsClient(sim.ws_url + "/ws/v5/public") as c:
            await c.send(
                {
                    "op": "subscribe",
                    "args": [{"channel": "books", "instId": i} for i in ("BTC-USDT", "ETH-USDT")]
                    + [{"channel": "trades", "instId": i} for i in ("BTC-USDT", "ETH-USDT")],
                }
            )
            await c.recv_until(channel("books"))
            await fault(sim, kind="pause", instId="BTC-USDT", seconds=1.2)
            await c.recv_until(
                lambda m: (
                    channel("books")(m)
                    and m["arg"]["instId"] == "BTC-USDT"
                    and not m["data"][0]["asks"]
                    and not m["data"][0]["bids"]
                )
            )  # flush in-flight
            t0 = time.monotonic()
            seen: dict = {}
            while time.monotonic() - t0 < 0.8:
                m = await c.recv_until(lambda m: "data" in m)
                seen.setdefault((m["arg"]["channel"], m["arg"]["instId"]), []).append(m["data"][0])
            assert ("trades", "BTC-USDT") not in seen and ("trades", "ETH-USDT") in seen
            beats = seen[("books", "BTC-USDT")]
            assert beats and all(
                d["seqId"] == d["prevSeqId"] and not d["asks"] and not d["bids"] for d in beats
            )

    run(body())


def test_unknown_fault_kind_rejected(sim):
    async def body():
        _, r = await rest_post(sim.rest_url, "/sim/faults", {"kind": "explode"})
        assert r["code"] == "51000"
        _, st = await rest_get(sim.rest_url, "/sim/stats")
        assert st["data"][0]["messagesSent"] > 0 and st["data"][0]["faults"]

    run(body())
