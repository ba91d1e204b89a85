"""okxsim's `hostile` fault: every copy it makes is invalid per OKX's documented field types, the
valid original still arrives, and the truth counts exactly the copies written.

The validator below is this test's own reading of okx-v5-protocol.md (section 4), written
independently of okxsim/hostile.py and of the product's parser, so a mutation that slipped
back to "valid" (or a copy that silently replaced its original) fails here.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import aiohttp
import orjson
import pytest

from okxsim import OkxSim, SimConfig
from okxsim.hostile import COPY_FIRST, HostileFault, mutate, mutations_for
from okxsim.testing import WsClient, rest_get, rest_post

# ----- an independent schema: what a valid OKX market frame looks like --------------------------

_DEC = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?")  # [0-9] is ASCII only in re
_MS = re.compile(r"[0-9]{13}")
_ID = re.compile(r"[1-9][0-9]{0,18}")
TICKER_NUMBERS = (
    "last",
    "lastSz",
    "open24h",
    "high24h",
    "low24h",
    "volCcy24h",
    "vol24h",
    "sodUtc0",
    "sodUtc8",
)
TICKER_BBO = ("askPx", "askSz", "bidPx", "bidSz")  # "" on an empty side


def _dec(v: Any) -> bool:
    return type(v) is str and len(v) <= 40 and _DEC.fullmatch(v) is not None


def _ms(v: Any) -> bool:
    return type(v) is str and _MS.fullmatch(v) is not None


def _id(v: Any) -> bool:
    return type(v) is str and _ID.fullmatch(v) is not None and int(v) < 2**63


def _int64(v: Any) -> bool:
    return type(v) is int and -(2**63) <= v < 2**63


def _level(lv: Any) -> bool:
    return (
        type(lv) is list
        and len(lv) == 4
        and _dec(lv[0])
        and _dec(lv[1])
        and lv[2] == "0"
        and type(lv[3]) is str
        and lv[3].isascii()
        and lv[3].isdigit()
    )


def valid(frame: dict) -> bool:
    ch = frame["arg"]["channel"]
    data = frame.get("data")
    if type(data) is not list or len(data) != 1:
        return False
    d = data[0]
    if ch in ("trades", "trades-all"):
        return (
            type(d) is dict
            and type(d.get("instId")) is str
            and _id(d.get("tradeId"))
            and _dec(d.get("px"))
            and _dec(d.get("sz"))
            and d.get("side") in ("buy", "sell")
            and _ms(d.get("ts"))
            and d.get("source", "0") in ("0", "1")
            and (ch == "trades-all" or _id(d.get("count")))
            and ("count" not in d or _id(d["count"]))
        )
    if ch == "tickers":
        return (
            type(d) is dict
            and type(d.get("instId")) is str
            and _ms(d.get("ts"))
            and all(_dec(d.get(k)) for k in TICKER_NUMBERS)
            and all(d.get(k) == "" or _dec(d.get(k)) for k in TICKER_BBO)
        )
    if ch in ("books", "books5", "bbo-tbt"):
        ok = (
            type(d) is dict
            and type(d.get("asks")) is list
            and type(d.get("bids")) is list
            and all(map(_level, d["asks"]))
            and all(map(_level, d["bids"]))
            and _ms(d.get("ts"))
            and _int64(d.get("seqId"))
        )
        if ch == "books":
            ok = (
                ok and _int64(d.get("prevSeqId")) and ("checksum" not in d or _int64(d["checksum"]))
            )
        return ok
    if ch.startswith("candle"):
        return (
            type(d) is list
            and len(d) == 9
            and _ms(d[0])
            and all(map(_dec, d[1:8]))
            and d[8] in ("0", "1")
        )
    raise AssertionError(f"no schema for {ch}")


# ----- the pure part ------------------------------------------------------------------------------

SAMPLES = {
    "trades-all": {
        "instId": "BTC-USDT",
        "tradeId": "242589207",
        "px": "42219.9",
        "sz": "0.12060306",
        "side": "buy",
        "source": "0",
        "ts": "1630048897897",
    },
    "trades": {
        "instId": "BTC-USDT",
        "tradeId": "130639474",
        "px": "42219.9",
        "sz": "0.1206",
        "side": "sell",
        "ts": "1630048897897",
        "count": "3",
        "source": "0",
        "seqId": 1234,
    },
    "tickers": {
        "instType": "SPOT",
        "instId": "BTC-USDT",
        "last": "9999.99",
        "lastSz": "0.1",
        "askPx": "9999.99",
        "askSz": "11",
        "bidPx": "8888.88",
        "bidSz": "5",
        "open24h": "9000",
        "high24h": "10000",
        "low24h": "8888.88",
        "volCcy24h": "2222",
        "vol24h": "2222",
        "sodUtc0": "2222",
        "sodUtc8": "2222",
        "ts": "1597026383085",
    },
    "books": {
        "asks": [["8476.98", "415", "0", "13"]],
        "bids": [["8476.97", "256", "0", "12"]],
        "ts": "1597026383085",
        "checksum": 0,
        "prevSeqId": 122,
        "seqId": 123,
    },
    "books5": {
        "asks": [["8476.98", "415", "0", "13"]],
        "bids": [["8476.97", "256", "0", "12"]],
        "instId": "BTC-USDT",
        "ts": "1597026383085",
        "seqId": 123,
    },
    "bbo-tbt": {
        "asks": [["8476.98", "415", "0", "13"]],
        "bids": [["8476.97", "256", "0", "12"]],
        "ts": "1597026383085",
        "seqId": 123,
    },
    "candle1m": [
        "1597026383085",
        "8533.02",
        "8553.74",
        "8527.17",
        "8548.26",
        "45247",
        "529.5858061",
        "529.5858061",
        "0",
    ],
}


def frame(channel: str, item: Any) -> dict:
    out: dict = {"arg": {"channel": channel, "instId": "BTC-USDT"}, "data": [item]}
    if channel == "books":
        out["action"] = "update"
    return out


@pytest.mark.parametrize("channel", sorted(SAMPLES))
def test_every_mutation_breaks_the_schema_and_leaves_the_original_alone(channel):
    original = frame(channel, SAMPLES[channel])
    before = orjson.dumps(original)
    assert valid(original)
    names = set()
    for n in range(len(mutations_for(channel))):
        bad, m, _value = mutate(channel, original, n)
        names.add(m)
        assert not valid(bad), (channel, m)
        assert bad["arg"] == original["arg"]  # still routed to the same channel
    assert orjson.dumps(original) == before  # copies, never the original mutated
    # each mutation reached; only `count`, which trades-all does not carry, cannot fit there
    fits = {m for m in mutations_for(channel) if (channel, m.path) != ("trades-all", ("count",))}
    assert names == fits


def test_a_level_less_books_update_still_gets_an_invalid_copy():
    heartbeat = frame(
        "books",
        {"asks": [], "bids": [], "ts": "1597026383085", "checksum": 0, "prevSeqId": 5, "seqId": 5},
    )
    for n in range(len(mutations_for("books"))):
        bad, m, _ = mutate("books", heartbeat, n)
        assert not valid(bad) and m.path[0] not in ("asks", "bids") or m.path == ("asks",)


def test_the_window_takes_one_frame_in_every_and_ends():
    h = HostileFault(every=3, until=100.0, channels=frozenset({"trades-all"}), inst="BTC-USDT")
    picked = [h.wants("trades-all", "BTC-USDT", 1.0) for _ in range(9)]
    assert picked == [False, False, True] * 3
    assert not h.wants("tickers", "BTC-USDT", 1.0)  # not a chosen channel
    assert not h.wants("trades-all", "ETH-USDT", 1.0)  # not the chosen instrument
    assert not any(h.wants("trades-all", "BTC-USDT", 100.0) for _ in range(3))  # over


def test_the_issue_mutations_are_all_there():
    got = {
        (c, m.path[-1] if len(m.path) == 1 else m.path, m.name): m.value(None)
        for c in ("trades-all", "tickers")
        for m in mutations_for(c)
        if m.name in ("non-numeric", "empty", "blank", "hex")
    }
    assert got[("trades-all", "tradeId", "non-numeric")] == "12a"
    assert got[("trades-all", "px", "empty")] == ""
    assert got[("trades-all", "px", "non-numeric")] == "1e400x"
    assert got[("trades-all", "side", "blank")] == "  "
    assert got[("trades-all", "count", "hex")] == "0x1F"
    assert got[("tickers", "last", "non-numeric")] == "12a"
    assert got[("tickers", "bidPx", "non-numeric")] == "-"
    kinds = {m.name for c in ("trades-all", "tickers", "books") for m in mutations_for(c)}
    assert {"type", "missing", "huge", "unicode-digits", "nested"} <= kinds


# ----- on the wire ----------------------------------------------------------------------------------

INSTS = ("BTC-USDT", "ETH-USDT")
WINDOW_S = 2.0


@pytest.mark.integration
def test_hostile_on_the_wire_counts_every_copy_and_keeps_the_originals():
    cfg = SimConfig(
        port=0,
        tick_ms=20,
        rate=4,
        bot_interval_s=0,
        seq_reset_prob=0,
        strict_limits=False,
        instruments=INSTS,
        heartbeat_s=0.5,
    )

    async def body(sim: OkxSim) -> tuple[list, list, dict]:
        frames: list[dict] = []
        async with (
            WsClient(sim.ws_url + "/ws/v5/public") as pub,
            WsClient(sim.ws_url + "/ws/v5/business") as biz,
        ):
            await pub.send(
                {
                    "op": "subscribe",
                    "args": [
                        {"channel": c, "instId": i} for c in ("books", "tickers") for i in INSTS
                    ],
                }
            )
            await biz.send(
                {"op": "subscribe", "args": [{"channel": "trades-all", "instId": i} for i in INSTS]}
            )
            st, r = await rest_post(
                sim.rest_url,
                "/sim/faults",
                {
                    "kind": "hostile",
                    "every": 3,
                    "seconds": WINDOW_S,
                    "channels": ["books", "trades-all", "tickers"],
                },
            )
            assert st == 200 and r["code"] == "0", r
            end = time.monotonic() + WINDOW_S + 0.5
            paused = False
            while True:
                left = end - time.monotonic()
                if left <= 0:
                    break
                if not paused and left < 0.4:
                    # quiet the market so the last ticker sent is the last one read
                    await rest_post(sim.rest_url, "/sim/faults", {"kind": "pause", "seconds": 30})
                    paused = True
                for c in (pub, biz):
                    try:
                        msg = await c.recv_raw(timeout=0.05)
                    except TimeoutError:
                        continue
                    assert msg.type == aiohttp.WSMsgType.TEXT, msg
                    obj = orjson.loads(msg.data)
                    if "data" in obj:
                        frames.append(obj)
            await asyncio.sleep(0.3)  # frames written before the pause reach the socket
            for c in (pub, biz):
                while True:
                    try:
                        msg = await c.recv_raw(timeout=0.2)
                    except TimeoutError:
                        break
                    obj = orjson.loads(msg.data)
                    if "data" in obj:
                        frames.append(obj)
        _, log = await rest_get(sim.rest_url, "/sim/truth/hostile")
        _, summary = await rest_get(sim.rest_url, "/sim/truth/hostile?summary=1")
        _, tickers = await rest_get(sim.rest_url, "/sim/truth/tickers")
        _, stats = await rest_get(sim.rest_url, "/sim/stats")
        return (
            frames,
            log["data"],
            {"summary": summary["data"][0], "tickers": tickers["data"], "stats": stats["data"][0]},
        )

    with OkxSim(cfg) as sim:
        frames, log, truth = asyncio.run(asyncio.wait_for(body(sim), 30))

    bad = [f for f in frames if not valid(f)]
    good = [f for f in frames if valid(f)]
    # every invalid frame is one okxsim recorded, and every recorded copy arrived (one socket
    # per channel here, so copies == frames)
    assert len(bad) == truth["summary"]["copies"] == sum(r["copies"] for r in log)
    assert truth["stats"]["perChannel"]["hostile"] == len(bad)
    assert {r["channel"] for r in log} == {"books", "trades-all", "tickers"}
    assert len({(r["field"], r["mutation"]) for r in log}) >= 10
    seen = sum(1 for f in frames if f["arg"]["channel"] in ("books", "trades-all", "tickers"))
    assert len(bad) * 3 <= seen + 3 and len(bad) > 20  # one in three during the window
    # the originals: an unbroken books chain and every trade id, once, in order
    for inst in INSTS:
        books = [f["data"][0] for f in good if f["arg"] == {"channel": "books", "instId": inst}]
        assert books[0]["prevSeqId"] == -1
        for a, b in zip(books, books[1:]):
            assert b["prevSeqId"] == a["seqId"], (inst, a, b)
        ids = [
            int(f["data"][0]["tradeId"])
            for f in good
            if f["arg"]["channel"] == "trades-all" and f["arg"]["instId"] == inst
        ]
        assert ids and ids == list(range(ids[0], ids[0] + len(ids))), inst
        ticks = [f["data"][0] for f in good if f["arg"] == {"channel": "tickers", "instId": inst}]
        assert ticks[-1] == next(t for t in truth["tickers"] if t["instId"] == inst)
    # a trades or books copy comes right before its original, a ticker copy right after
    for r in log:
        assert r["before_original"] == (r["channel"] in COPY_FIRST)
