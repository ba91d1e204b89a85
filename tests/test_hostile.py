"""Every frame OKX sends, and none it could not: the `hostile` acceptance test.

okxsim's `hostile` fault (okxsim/hostile.py) copies one frame in three of `books`, `trades-all`
and `tickers` on nine instruments for 60 s and breaks one field of each copy (tradeId "12a",
px "" or "1e400x", side "  ", count "0x1F", ticker last "12a", bidPx "-", another JSON type, a
missing required field, an out-of-range number, Arabic-Indic digits, an object for a string);
the valid original is sent as well. Against the whole collector as separate processes
(tests/fault_stack.py: a real `python -m collector`, a real Celery worker, redis-server, the
MongoDB stand-in, real sockets), this must hold:

- every connection stays up: no reconnect caused by content, no connection thread dies;
- every hostile copy is counted as rejected: the feeder's parse-error counters (/metrics,
  feeder_bad_frames{kind="parse_error"}) equal the copies okxsim recorded (/sim/truth/hostile);
- the stores equal okxsim's truth: every trade, none invented; each ticker's Redis state equals
  the last valid ticker okxsim sent;
- /healthz answers 200 throughout (polled every half second).

Until the parser validates every field (okx/parse.py, another engineer's work), this test fails:
its message lists the mutations today's parser lets through.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from typing import Any

import pytest
import redis

from core import keys
from okx.parse import parse_frame
from okx.records import ParseError
from okxsim.config import DEFAULT_INSTRUMENTS
from okxsim.hostile import encode, mutate, mutations_for
from tests.fault_stack import FaultStack
from tests.polling import wait_for

pytestmark = pytest.mark.integration

CHANNELS = ("books", "trades-all", "tickers")
EVERY = 3  # one frame in three
FAULT_S = 60.0  # the figure
SETTLE_S = 60.0  # after the window: stores equal the truth within this


def let_through() -> list[str]:
    """The mutations today's parser accepts (diagnosis for the failure message): each applied
    to a typical frame of its channel and fed to okx.parse.parse_frame."""
    samples: dict[str, dict[str, Any]] = {
        "trades-all": {
            "arg": {"channel": "trades-all", "instId": "BTC-USDT"},
            "data": [
                {
                    "instId": "BTC-USDT",
                    "tradeId": "242589207",
                    "px": "42219.9",
                    "sz": "0.1206",
                    "side": "buy",
                    "source": "0",
                    "ts": "1630048897897",
                    "count": "1",
                }
            ],
        },
        "tickers": {
            "arg": {"channel": "tickers", "instId": "BTC-USDT"},
            "data": [
                {
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
                }
            ],
        },
        "books": {
            "arg": {"channel": "books", "instId": "BTC-USDT"},
            "action": "update",
            "data": [
                {
                    "asks": [["8476.98", "415", "0", "13"]],
                    "bids": [["8476.97", "256", "0", "12"]],
                    "ts": "1597026383085",
                    "checksum": 0,
                    "prevSeqId": 122,
                    "seqId": 123,
                }
            ],
        },
    }
    out = []
    for channel, sample in samples.items():
        for n, m in enumerate(mutations_for(channel)):
            made = mutate(channel, sample, n)
            if made is not None and type(parse_frame(encode(made[0]))) is not ParseError:
                out.append(f"{channel} {made[1].path} {m.name}")
    return out


class HostileStack(FaultStack):
    """The fault stack on nine instruments with books, trades-all and tickers."""

    def __init__(self, workdir: Any) -> None:
        # OKX's own 100 ms cadence (the fault matrix's 50 ms on nine instruments outruns one
        # worker on a shared 2-core machine); no bot: no private channel is subscribed
        super().__init__(
            workdir,
            insts=DEFAULT_INSTRUMENTS,
            channels=",".join(CHANNELS),
            sim={"tick_ms": 100, "bot_interval_s": 0},
            worker_processes=2,
        )

    def healthz_status(self) -> int:
        try:
            url = f"http://127.0.0.1:{self.health_port}/healthz"
            with urllib.request.urlopen(url, timeout=2) as r:
                return r.status
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            return 0  # not answering at all

    def parse_errors(self) -> int:
        """feeder_bad_frames{kind="parse_error",...} summed over reasons, from /metrics."""
        url = f"http://127.0.0.1:{self.health_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as r:
            text = r.read().decode()
        return int(
            sum(
                float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith("feeder_bad_frames_total{") and 'kind="parse_error"' in line
            )
        )

    def connections(self) -> list[tuple[str, str]]:
        """(thread name, state) of every running connection thread."""
        return sorted(
            (c.get("name", ""), c.get("state", ""))
            for c in (self.feeder_health() or {}).get("connections") or []
        )

    def hostile_copies(self) -> int:
        return int(self.get("/sim/truth/hostile?summary=1")[0]["copies"])

    def ticker_mismatches(self) -> dict[str, Any]:
        """instId -> (field, stored, sent) for every field of the last ticker okxsim sent that
        the state Redis does not hold as sent."""
        state = redis.Redis.from_url(
            self.redis.url.replace("/0", "/1"), socket_timeout=5, decode_responses=True
        )
        try:
            out: dict[str, Any] = {}
            for sent in self.get("/sim/truth/tickers"):
                stored = state.hgetall(keys.ticker(sent["instId"]))
                wrong = [(k, stored.get(k), v) for k, v in sent.items() if stored.get(k) != v]
                if wrong:
                    out[sent["instId"]] = wrong[:4]
            return out
        finally:
            state.close()


@pytest.fixture
def stack(tmp_path):
    s = HostileStack(tmp_path)
    try:
        yield s
    finally:
        s.stop()


def test_hostile_frames_are_rejected_counted_and_change_nothing(stack):
    s = stack
    s.ensure_running()
    wait_for(
        lambda: s.exact(s.mark()),
        60,
        interval=0.25,
        what="stores equal the truth before the fault\n" + s.logs(),
    )
    conns_before = s.connections()
    reconnects_before = s.reconnects()
    errors_before = s.parse_errors()

    reply = s.fault(kind="hostile", every=EVERY, seconds=FAULT_S, channels=list(CHANNELS))
    assert reply["every"] == EVERY
    end = time.monotonic() + FAULT_S
    not_200: list[tuple[float, int]] = []
    t0 = time.monotonic()
    while time.monotonic() < end:  # the fault's window, /healthz polled throughout
        code = s.healthz_status()
        if code != 200:
            not_200.append((round(time.monotonic() - t0, 1), code))
        if s.feeder.poll() is not None:
            break
        time.sleep(0.5)  # the polling interval, not a wait for a state
    # the market goes quiet: the last ticker okxsim sent stays the last one
    s.fault(kind="pause", seconds=SETTLE_S + 30)
    through = s.mark()
    copies = s.hostile_copies()

    try:
        wait_for(
            lambda: s.parse_errors() - errors_before >= copies,
            SETTLE_S / 3,
            interval=0.5,
            what="every copy counted",
        )
    except AssertionError:
        pass  # reported below with the other figures
    try:
        wait_for(
            lambda: s.exact(through) and not s.ticker_mismatches(),
            SETTLE_S,
            interval=0.5,
            what="stores equal the truth",
        )
        stores_ok = True
    except AssertionError:
        stores_ok = False
    result = {
        "hostile copies sent": copies,
        "parse errors counted": s.parse_errors() - errors_before,
        "reconnects": s.reconnects() - reconnects_before,
        "connections before/after": (conns_before, s.connections()),
        "/healthz not 200 (s, code)": not_200[:10],
        "stores": s.comparison(through),
        "tickers not as last sent": s.ticker_mismatches(),
        "feeder exit": s.feeder.poll(),
    }
    feeder_log = "\n".join(p.read_text() for p in sorted(s.workdir.glob("*-feeder.log")))
    result["feeder tracebacks"] = feeder_log.count("Traceback")
    report = "\n".join(f"  {k}: {v}" for k, v in result.items())
    report += "\n  mutations today's parser lets through: " + ", ".join(let_through() or ["none"])

    assert copies > 1000, report  # 1 in 3 of 9 instruments x 60 s
    assert result["feeder exit"] is None, report
    assert result["reconnects"] == 0, report
    assert result["connections before/after"][1] == conns_before, report  # no thread died
    assert result["feeder tracebacks"] == 0, report
    assert not not_200, report
    assert result["parse errors counted"] == copies, report
    assert stores_ok, report
