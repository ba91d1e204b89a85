"""Shared helpers for the worker tests: feeder-shaped records and batches, fakes, flaky wrappers."""

from __future__ import annotations

import itertools
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from core.contract import make_batch
from okx.records import TICKER_FIELDS, Balance, Candle, Order, Position, Ticker, Trade
from tests.polling import wait_for  # noqa: F401  (re-exported for the worker tests)

T0 = 1_700_000_000_000
_batch_no = itertools.count(1)


def order(ord_id: str = "1001", u_time: int = T0, state: str = "live", **extra: Any) -> dict:
    fields = {
        "instType": "SWAP",
        "instId": "BTC-USDT-SWAP",
        "ordId": ord_id,
        "clOrdId": "",
        "tradeId": "" if state == "live" else f"t{ord_id}",
        "state": state,
        "px": "35000.1",
        "sz": "2",
        "side": "buy",
        "ordType": "limit",
        "cTime": str(T0 - 5000),
        "uTime": str(u_time),
        "fillSz": "0",
        "accFillSz": "0",
    }
    fields.update(extra)
    return Order(
        instType="SWAP",
        instId=fields["instId"],
        ordId=ord_id,
        state=state,
        uTime=u_time,
        cTime=T0 - 5000,
        fields=fields,
    ).to_payload()


def balance(ccy: str = "USDT", cash: str = "100.5", u_time: int = T0) -> dict:
    return Balance(
        ccy=ccy,
        cashBal=cash,
        uTime=u_time,
        source="balance_and_position",
        fields={"ccy": ccy, "cashBal": cash, "uTime": str(u_time)},
    ).to_payload()


def position(pos_id: str = "555", pos: str = "3", u_time: int = T0) -> dict:
    return Position(
        posId=pos_id,
        instId="BTC-USDT-SWAP",
        instType="SWAP",
        pos=pos,
        uTime=u_time,
        source="positions",
        fields={"tradeId": "77", "ccy": "USDT", "avgPx": "35000", "posSide": "net"},
    ).to_payload()


def trade(
    trade_id: int, inst: str = "BTC-USDT", ts: int | None = None, px: str = "35000.5"
) -> dict:
    return Trade(
        channel="trades",
        instId=inst,
        tradeId=str(trade_id),
        px=px,
        sz="0.01",
        side="buy",
        ts=ts if ts is not None else T0 + trade_id,
    ).to_payload()


def ticker(inst: str = "BTC-USDT", ts: int = T0, last: str = "35000.5") -> dict:
    fields = {k: "1" for k in TICKER_FIELDS}
    fields.update(instType="SPOT", instId=inst, last=last, bidPx="35000.4", askPx="35000.6")
    return Ticker(instId=inst, ts=ts, fields=fields).to_payload()


def candle(
    inst: str = "BTC-USDT",
    bar: str = "1m",
    ts: int = T0,
    c: str = "35000",
    vol: str = "10",
    confirm: str = "0",
) -> dict:
    return Candle(
        instId=inst,
        bar=bar,
        ts=ts,
        o="34990",
        h="35010",
        l="34980",
        c=c,
        vol=vol,
        volCcy="0.3",
        volCcyQuote="10500",
        confirm=confirm,
    ).to_payload()


def book(
    inst: str = "BTC-USDT",
    ts: int = T0,
    seq: int | None = 100,
    bid: str = "35000.4",
    channel: str = "books5",
    full: bool = False,
) -> dict:
    # the feeder's books payload (core.contract): levels as OKX sends them, best first
    asks = [[str(35000.6 + i), "1", "0", "2"] for i in range(5)]
    bids = [[bid, "2", "0", "3"]] + [[str(34999 - i), "1", "0", "1"] for i in range(4)]
    return {
        "instId": inst,
        "channel": channel,
        "ts": str(ts),
        "seqId": seq,
        "asks": asks,
        "bids": bids,
        "depth": 5,
        "full": full,
    }


def batch(kind: str, records: list[dict], source: str = "ws") -> dict:
    return make_batch(
        kind,
        records,
        source=source,
        producer="test-feeder",
        batch=next(_batch_no),
        sent_ms=int(time.time() * 1000),
    )


def one_of_each() -> dict[str, list[dict]]:
    """A record of every kind (what the feeder sends), for 'every kind is stored' tests."""
    return {
        "orders": [order("1001", T0, "live"), order("1001", T0 + 10, "filled")],
        "balances": [balance("USDT"), balance("BTC", "0.5")],
        "positions": [position("555")],
        "trades": [trade(1), trade(2)],
        "tickers": [ticker()],
        "candles": [candle(confirm="1"), candle(ts=T0 + 60_000, confirm="0")],
        "books": [book()],
    }


def decode(mapping: dict) -> dict:
    return {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
        for k, v in mapping.items()
    }


# ----- failure injection --------------------------------------------------------------------------


class Flaky:
    """Raise `errors` (in turn) from every method call until `failures` calls failed or `until()`
    is true, then pass calls through to the wrapped object. Wraps a database: `db[name]` returns
    a wrapped collection sharing the same counters."""

    def __init__(
        self,
        target: Any,
        errors: list[BaseException],
        failures: int = 10**9,
        until: Callable[[], bool] | None = None,
        state: dict | None = None,
        after: bool = False,
    ):
        # after=True: the call goes through first, then the error (the reply was lost)
        self._t, self._errors, self._until, self._after = target, errors, until, after
        self._state = (
            state
            if state is not None
            else {"left": failures, "raised": 0, "lock": threading.Lock()}
        )

    @property
    def raised(self) -> int:
        return self._state["raised"]

    def _maybe_fail(self) -> None:
        with self._state["lock"]:
            if self._state["left"] > 0 and not (self._until and self._until()):
                self._state["left"] -= 1
                exc = self._errors[self._state["raised"] % len(self._errors)]
                self._state["raised"] += 1
                raise exc

    def __getitem__(self, name: str) -> Flaky:
        return Flaky(
            self._t[name], self._errors, until=self._until, state=self._state, after=self._after
        )

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._t, name)
        if not callable(attr):
            return attr

        def call(*a: Any, **kw: Any) -> Any:
            if self._after:
                try:
                    result, error = attr(*a, **kw), None
                except Exception as exc:  # noqa: BLE001 - replayed below unless the reply is "lost"
                    result, error = None, exc
                self._maybe_fail()
                if error is not None:
                    raise error
                return result
            self._maybe_fail()
            return attr(*a, **kw)

        return call


class FlakyMongoClient:
    """A mongomock client whose databases are Flaky."""

    def __init__(self, client: Any, **flaky: Any):
        self.client = client
        self.db_wrappers: dict[str, Flaky] = {}
        self._flaky = flaky

    def __getitem__(self, name: str) -> Flaky:
        if name not in self.db_wrappers:
            self.db_wrappers[name] = Flaky(self.client[name], **self._flaky)
        return self.db_wrappers[name]


# ----- processes -------------------------------------------------------------------------------------


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except FileNotFoundError:
        return []


def kill_quietly(pid: int, sig: int = signal.SIGKILL) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
