"""okxsim market data: books splice with REST, checksums, trades vs history, endpoints, candles."""

from __future__ import annotations

import asyncio
import time
import zlib
from decimal import Decimal

import orjson
import pytest

from okxsim import OkxSim, SimConfig
from okxsim.testing import WsClient, channel, event, rest_get

pytestmark = pytest.mark.integration


# ---- independent client-side logic (deliberately not shared with okxsim) -------------------
def crc(bids: list, asks: list) -> int:
    fields = []
    for i in range(25):
        if i < len(bids):
            fields += bids[i][:2]
        if i < len(asks):
            fields += asks[i][:2]
    v = zlib.crc32(":".join(fields).encode())
    return v - 2**32 if v >= 2**31 else v


class LocalBook:
    def __init__(self) -> None:
        self.bids: dict[Decimal, list] = {}
        self.asks: dict[Decimal, list] = {}
        self.seq: int | None = None

    def snapshot(self, d: dict) -> None:
        self.bids = {Decimal(lv[0]): lv for lv in d["bids"]}
        self.asks = {Decimal(lv[0]): lv for lv in d["asks"]}
        self.seq = d["seqId"]

    def update(self, d: dict) -> None:
        assert d["prevSeqId"] == self.seq, f"seq gap {self.seq} -> {d['prevSeqId']}"
        for side, levels in ((self.bids, d["bids"]), (self.asks, d["asks"])):
            for lv in levels:
                if lv[1] == "0":
                    side.pop(Decimal(lv[0]), None)
                else:
                    side[Decimal(lv[0])] = lv
        self.seq = d["seqId"]

    def top(self, n: int = 400) -> tuple[list, list]:
        bids = [self.bids[p] for p in sorted(self.bids, reverse=True)[:n]]
        asks = [self.asks[p] for p in sorted(self.asks)[:n]]
        return bids, asks


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 45))


@pytest.fixture(scope="module")
def sim():
    cfg = SimConfig(
        port=0,
        checksum="crc",
        rate=4,
        tick_ms=25,
        seq_reset_prob=0.02,
        heartbeat_s=1.0,
        strict_limits=False,
        idle_timeout=30,
    )
    with OkxSim(cfg) as s:
        yield s


def test_books_stream_rebuilds_rest_snapshot_and_crc_verifies(sim):
    async def body():
        async with WsClient(sim.ws_url + "/ws/v5/public") as c:
            insts = ["BTC-USDT", "PEPE-USDT", "DOGE-USDT"]
            await c.send(
                {
                    "id": "b1",
                    "op": "subscribe",
                    "args": [{"channel": "books", "instId": i} for i in insts],
                }
            )
            books = {i: LocalBook() for i in insts}
            acks, resets, heartbeats, checked = 0, 0, 0, 0
            matched: set[str] = set()
            rest_snaps: dict[str, dict] = {}
            counts: dict[str, int] = {}
            while len(matched) < len(insts):
                msg = await c.recv()
                if msg.get("event") == "subscribe":
                    assert msg["id"] == "b1"
                    acks += 1
                    continue
                inst = msg["arg"]["instId"]
                d = msg["data"][0]
                assert isinstance(d["seqId"], int) and isinstance(d["checksum"], int)
                assert isinstance(d["prevSeqId"], int) and d["ts"].isdigit()
                b = books[inst]
                if msg["action"] == "snapshot":
                    assert d["prevSeqId"] == -1 and len(d["bids"]) == 400 == len(d["asks"])
                    b.snapshot(d)
                else:
                    if d["seqId"] < d["prevSeqId"]:
                        resets += 1
                    if d["seqId"] == d["prevSeqId"] and not d["asks"] and not d["bids"]:
                        heartbeats += 1
                    b.update(d)
                assert crc(*b.top(25)) == d["checksum"]
                checked += 1
                counts[inst] = counts.get(inst, 0) + 1
                if inst not in rest_snaps and counts[inst] >= 25:
                    _, r = await rest_get(
                        sim.rest_url, f"/api/v5/market/books?instId={inst}&sz=400"
                    )
                    rest_snaps[inst] = r["data"][0]
                snap = rest_snaps.get(inst)
                if snap is not None and inst not in matched and b.seq == snap["seqId"]:
                    bids, asks = b.top(400)
                    assert bids == snap["bids"] and asks == snap["asks"]
                    matched.add(inst)
            assert acks == 3 and checked >= 75
        return resets

    run(body())


def test_books_without_ws_snapshot_bootstrap_from_rest():
    cfg = SimConfig(
        port=0,
        ws_snapshot=False,
        rate=4,
        tick_ms=25,
        strict_limits=False,
        seq_reset_prob=0,
        instruments=("ETH-USDT",),
    )
    with OkxSim(cfg) as s:

        async def body():
            async with WsClient(s.ws_url + "/ws/v5/public") as c:
                await c.send(
                    {"op": "subscribe", "args": [{"channel": "books", "instId": "ETH-USDT"}]}
                )
                await c.recv_until(event("subscribe"))
                first = await c.recv_until(channel("books"))
                assert first["action"] == "update"
                assert first["data"][0]["checksum"] == 0  # default mode: zero
                buffered = [first]
                _, r = await rest_get(s.rest_url, "/api/v5/market/books?instId=ETH-USDT&sz=400")
                snap = r["data"][0]
                assert snap["seqId"] >= first["data"][0]["prevSeqId"]
                b = LocalBook()
                b.snapshot(snap)
                # read on until the stream has passed the REST seqId, then splice
                while buffered[-1]["data"][0]["seqId"] <= snap["seqId"]:
                    buffered.append(await c.recv_until(channel("books")))
                kept = [m["data"][0] for m in buffered if m["data"][0]["seqId"] > snap["seqId"]]
                assert kept[0]["prevSeqId"] <= snap["seqId"] < kept[0]["seqId"]
                b.seq = kept[0]["prevSeqId"]
                for d in kept:
                    b.update(d)
                for _ in range(10):
                    b.update((await c.recv_until(channel("books")))["data"][0])
                _, r = await rest_get(s.rest_url, "/api/v5/market/books?instId=ETH-USDT&sz=400")
                snap2 = r["data"][0]
                while b.seq != snap2["seqId"]:
                    b.update((await c.recv_until(channel("books")))["data"][0])
                assert list(b.top()) == [snap2["bids"], snap2["asks"]]

        run(body())


def test_checksum_absent_mode():
    with OkxSim(SimConfig(port=0, checksum="absent", instruments=("SOL-USDT",), tick_ms=25)) as s:

        async def body():
            async with WsClient(s.ws_url + "/ws/v5/public") as c:
                await c.send(
                    {"op": "subscribe", "args": [{"channel": "books", "instId": "SOL-USDT"}]}
                )
                snap = await c.recv_until(channel("books"))
                upd = await c.recv_until(lambda m: channel("books")(m) and m["action"] == "update")
                assert "checksum" not in snap["data"][0] and "checksum" not in upd["data"][0]

        run(body())


async def _page_history(sim, inst: str, kind: str, oldest_id: int) -> list[dict]:
    """Page history-trades from now back to oldest_id, OKX style (newest first)."""
    got: dict[str, dict] = {}
    cursor = None
    while True:
        q = f"/api/v5/market/history-trades?instId={inst}&type={kind}&limit=100"
        if cursor is not None:
            q += f"&after={cursor}"
        _, r = await rest_get(sim.rest_url, q)
        assert r["code"] == "0"
        page = r["data"]
        assert page, "ran out of history"
        assert [int(t["tradeId"]) for t in page] == sorted(
            (int(t["tradeId"]) for t in page), reverse=True
        )
        if kind == "1":
            for t in page:
                assert t["tradeId"] not in got, "duplicate across tradeId pages"
                got[t["tradeId"]] = t
            cursor = page[-1]["tradeId"]
        else:
            # ts cursor is exclusive and several trades can share one ms: step to ts+1, dedupe
            new = [t for t in page if t["tradeId"] not in got]
            assert new or len(page) < 100
            for t in page:
                got[t["tradeId"]] = t
            cursor = (
                int(page[-1]["ts"]) + 1 if page[-1]["ts"] != page[0]["ts"] else int(page[-1]["ts"])
            )
        if min(int(t) for t in got) <= oldest_id:
            return sorted(got.values(), key=lambda t: int(t["tradeId"]))


def test_history_trades_paging_matches_trades_all_stream(sim):
    async def body():
        inst = "SOL-USDT"
        async with WsClient(sim.ws_url + "/ws/v5/business") as c:
            await c.send(
                {"id": "t1", "op": "subscribe", "args": [{"channel": "trades-all", "instId": inst}]}
            )
            await c.recv_until(event("subscribe"))
            streamed: list[dict] = []
            while len(streamed) < 200:
                m = await c.recv_until(channel("trades-all"))
                assert len(m["data"]) == 1
                streamed.extend(m["data"])
        ids = [int(t["tradeId"]) for t in streamed]
        assert ids == list(range(ids[0], ids[0] + len(ids))), "trades-all skipped or repeated ids"
        for kind in ("1", "2"):
            hist = await _page_history(sim, inst, kind, ids[0])
            hist_ids = [int(t["tradeId"]) for t in hist]
            assert hist_ids == list(range(hist_ids[0], hist_ids[-1] + 1)), f"gap in type {kind}"
            by_id = {t["tradeId"]: t for t in hist}
            for t in streamed:
                assert by_id[t["tradeId"]] == t
        _, truth = await rest_get(sim.rest_url, f"/sim/truth/trades?instId={inst}")
        truth_by_id = {t["tradeId"]: t for t in truth["data"]}
        assert all(truth_by_id[t["tradeId"]] == t for t in streamed)

    run(body())


def test_trades_channel_aggregates_per_taker_order(sim):
    async def body():
        inst = "BTC-USDT"
        async with WsClient(sim.ws_url + "/ws/v5/public") as c:
            await c.send({"op": "subscribe", "args": [{"channel": "trades", "instId": inst}]})
            await c.recv_until(event("subscribe"))
            aggs = [(await c.recv_until(channel("trades")))["data"][0] for _ in range(40)]
        _, truth = await rest_get(sim.rest_url, f"/sim/truth/trades?instId={inst}")
        by_id = {int(t["tradeId"]): t for t in truth["data"]}
        assert any(a["count"] != "1" for a in aggs)
        for a in aggs:
            last, n = int(a["tradeId"]), int(a["count"])
            parts = [by_id[i] for i in range(last - n + 1, last + 1)]
            assert {p["px"] for p in parts} == {a["px"]} and {p["side"] for p in parts} == {
                a["side"]
            }
            assert sum(Decimal(p["sz"]) for p in parts) == Decimal(a["sz"])
            assert isinstance(a["seqId"], int)

    run(body())


def test_wrong_endpoint_and_unknown_channel_errors(sim):
    async def body():
        async with WsClient(sim.ws_url + "/ws/v5/public") as c:
            await c.send(
                {
                    "id": "c1",
                    "op": "subscribe",
                    "args": [{"channel": "candle1m", "instId": "BTC-USDT"}],
                }
            )
            e = await c.recv_until(event("error"))
            assert (e["id"], e["code"]) == ("c1", "64001") and e["connId"]
            await c.send(
                {"id": "u1", "op": "subscribe", "args": [{"channel": "nope", "instId": "BTC-USDT"}]}
            )
            assert (await c.recv_until(event("error")))["code"] == "60018"
            await c.send(
                {
                    "id": "u2",
                    "op": "subscribe",
                    "args": [{"channel": "trades", "instId": "XRP-EUR"}],
                }
            )
            assert (await c.recv_until(event("error")))["code"] == "60018"
            await c.send(
                {
                    "id": "k1",
                    "op": "subscribe",
                    "args": [{"channel": "tickers", "instId": "TON-USDT"}],
                }
            )
            ack = await c.recv_until(event("subscribe"))
            assert ack["arg"] == {"channel": "tickers", "instId": "TON-USDT"} and ack["id"] == "k1"
            t = await c.recv_until(channel("tickers"))
            assert t["data"][0]["instId"] == "TON-USDT" and t["data"][0]["ts"].isdigit()
            await c.send(
                {
                    "id": "k2",
                    "op": "unsubscribe",
                    "args": [{"channel": "tickers", "instId": "TON-USDT"}],
                }
            )
            assert (await c.recv_until(event("unsubscribe")))["arg"]["channel"] == "tickers"
        async with WsClient(sim.ws_url + "/ws/v5/business") as c:
            await c.send(
                {
                    "id": "b1",
                    "op": "subscribe",
                    "args": [{"channel": "books", "instId": "BTC-USDT"}],
                }
            )
            e = await c.recv_until(event("error"))
            assert (e["id"], e["code"]) == ("b1", "64002")
            await c.send(
                {"op": "subscribe", "args": [{"channel": "candle1s", "instId": "UNI-USDT"}]}
            )
            await c.recv_until(event("subscribe"))
            seen_confirm = False
            while not seen_confirm:
                row = (await c.recv_until(channel("candle1s")))["data"][0]
                assert len(row) == 9 and row[8] in ("0", "1")
                seen_confirm = row[8] == "1"
        async with WsClient(sim.ws_url + "/ws/v5/private") as c:
            await c.send(
                {"id": "p1", "op": "subscribe", "args": [{"channel": "orders", "instType": "ANY"}]}
            )
            e = await c.recv_until(event("error"))
            assert (e["id"], e["code"]) == ("p1", "60011")

    run(body())


def test_ping_pong_and_idle_close_4004():
    with OkxSim(SimConfig(port=0, idle_timeout=0.6, instruments=("BTC-USDT",))) as s:

        async def body():
            async with WsClient(s.ws_url + "/ws/v5/public") as c:
                await c.send("ping")
                assert await c.recv() == "pong"
                msg = await c.recv_raw(timeout=5)
                assert msg.type.name in ("CLOSE", "CLOSED") and c.ws.close_code == 4004

        run(body())


def test_rest_market_endpoints_shapes(sim):
    async def body():
        _, r = await rest_get(sim.rest_url, "/api/v5/public/instruments?instType=SPOT")
        ids = {d["instId"]: d for d in r["data"]}
        assert (
            ids["PEPE-USDT"]["tickSz"] == "0.000000001" and ids["BTC-USDT"]["lotSz"] == "0.00000001"
        )
        _, r = await rest_get(sim.rest_url, "/api/v5/market/candles?instId=BTC-USDT&bar=1s&limit=5")
        rows = r["data"]
        assert rows[0][8] == "0" and all(row[8] == "1" for row in rows[1:])
        assert [int(x[0]) for x in rows] == sorted((int(x[0]) for x in rows), reverse=True)
        older = rows[2][0]
        _, r = await rest_get(
            sim.rest_url,
            f"/api/v5/market/history-candles?instId=BTC-USDT&bar=1s&after={older}&limit=2",
        )
        assert [int(x[0]) for x in r["data"]] == [int(older) - 1000, int(older) - 2000]
        _, r = await rest_get(sim.rest_url, "/api/v5/market/trades?instId=BTC-USDT&limit=3")
        assert len(r["data"]) == 3
        status, r = await rest_get(sim.rest_url, "/api/v5/market/books?instId=NOPE-USDT")
        assert r["code"] == "51001" and r["data"] == []
        _, r = await rest_get(sim.rest_url, "/api/v5/market/books?instId=BTC-USDT")
        assert len(r["data"][0]["bids"]) == 1 and isinstance(r["data"][0]["seqId"], int)

    run(body())


def test_same_seed_same_market():
    def first_trades(seed: int) -> list:
        with OkxSim(
            SimConfig(port=0, seed=seed, tick_ms=20, rate=3, instruments=("BTC-USDT", "PEPE-USDT"))
        ) as s:

            def enough(ex):
                return all(len(m.trades) >= 30 for m in ex.markets.values())

            deadline = time.monotonic() + 20
            while not s.call(enough):
                assert time.monotonic() < deadline
                time.sleep(0.05)
            return s.call(
                lambda ex: [(i, t[:4]) for i, m in ex.markets.items() for t in m.trades[:30]]
            )

    a, b, c = first_trades(7), first_trades(7), first_trades(8)
    assert a == b and a != c


class _Transport:
    """Records what okxsim writes to one socket."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0


def test_a_market_step_writes_each_connection_once_in_order():
    from okxsim.conn import Conn, ws_frame
    from okxsim.faults import FaultState
    from okxsim.hub import Hub
    from okxsim.stats import Stats

    stats = Stats()
    hub = Hub(SimConfig(port=0), {}, stats, FaultState())
    a, b = (Conn(None, _Transport(), cid, "public", stats) for cid in ("a", "b"))
    for conn, keys in ((a, [("trades", "X"), ("tickers", "X")]), (b, [("tickers", "X")])):
        for key in keys:
            hub.subs.setdefault(key, set()).add(conn)

    hub.send(("tickers", "X"), {"n": 0})  # outside a step: written at once
    assert len(a.transport.writes) == len(b.transport.writes) == 1
    hub.cork()
    for n in range(1, 4):
        hub.send(("trades", "X"), {"n": n})
        hub.send(("tickers", "X"), {"n": n})
    assert len(a.transport.writes) == 1  # nothing written during the step
    hub.uncork()
    frame = lambda n: ws_frame(orjson.dumps({"n": n}))  # noqa: E731
    assert a.transport.writes[1:] == [b"".join(frame(n) for n in (1, 1, 2, 2, 3, 3))]
    assert b.transport.writes[1:] == [b"".join(frame(n) for n in (1, 2, 3))]
    assert stats.per_channel == {"tickers": 2 + 6, "trades": 3} and a.sent == 7 and b.sent == 4
