"""Issue #19's acceptance run: two feeders of one shard against okxsim, killed in turn.

    python bench/redundant.py [--minutes 10] [--kill-every 30] [--both-down 10] [--json]

Real processes throughout (tests/fault_stack.py's stack): okxsim in this process (ground truth a
call away), a redis-server, the MongoDB wire-protocol server (nx-27017), a Celery worker and a
RedBeat beat, and two `python -m collector` feeders (FEEDER_ID feeder-a / feeder-b, one
FEEDER_SHARD) on the instruments with books, books5, trades-all, tickers and orders. Every
--kill-every seconds one feeder gets SIGKILL (in turn, only while the other is live) and is
restarted --restart-after seconds later; with --both-down N both are down together once, at
half time. The worker reaches okxsim's REST through a counting proxy (`RestCounter`: okxsim has
no request log), so every REST call backfill makes is counted by endpoint. Beat's audit and
fills sync are pushed out to a day, so every counted call is a gap repair (or the sweep's
account snapshot, counted apart).

After the schedule the run waits (polling, with a deadline) for the backfill to settle and then
checks, against okxsim's truth: the books sampling windows (the feeders' periodic full book,
FEEDER_FULL_BOOK_EVERY, and the workers' BOOKS_SAMPLE_MS samples of `books`), trades, order
events and their order<N>, the ticker state's lag, REST calls for covered windows and the gap
ledger. docs/redundancy-acceptance.md says what each check means and its tolerances.
`run()` returns a `Result`; tests/test_redundant_feeders.py calls it with a short schedule.
Exit status: 0 every check passed, 1 one failed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import redis

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.redundant_stack import FEEDERS, RedundantStack
from core import keys
from okxsim.config import DEFAULT_INSTRUMENTS
from tests.polling import wait_for

PUBLIC = ("books", "books5", "trades-all", "tickers")
BOOK_CHANNELS = ("books", "books5")
NO_HISTORY = ("books", "books5", "tickers")  # OKX has no REST history for these
SAMPLE_MS = 1000  # the workers' BOOKS_SAMPLE_MS (its default): one `books` document a second
SLACK_MS = 1000  # a full book comes with the first book message after its period
BEFORE_MS = AFTER_MS = 3000  # both-down: a gap's bounds may lie this far outside the window
# The ticker state behind okxsim's last ticker sent, at worst (a loaded 2-core machine reached 4 s
# with both feeders up); that the other feeder alone keeps the state moving is checked apart.
TICKER_LAG_MAX_MS = 5000
REPAIR_PATHS = ("/api/v5/market/", "/api/v5/trade/")  # history pages and book/ticker reseeds
ACCOUNT_PATHS = ("/api/v5/account/",)  # the sweep's account snapshot (a dead heartbeat)


@dataclass
class Result:
    checks: list[dict] = field(default_factory=list)  # name, value, expected, ok
    figures: dict[str, Any] = field(default_factory=dict)

    def check(self, name: str, value: Any, ok: bool, expected: str) -> None:
        self.checks.append({"name": name, "value": value, "expected": expected, "ok": bool(ok)})

    @property
    def ok(self) -> bool:
        return all(c["ok"] for c in self.checks)

    def failed(self) -> list[str]:
        return [
            f"{c['name']}: {c['value']} (expected {c['expected']})"
            for c in self.checks
            if not c["ok"]
        ]

    def table(self) -> str:
        rows = ["| check | value | expected | ok |", "|---|---|---|---|"]
        rows += [
            f"| {c['name']} | {c['value']} | {c['expected']} | {'yes' if c['ok'] else 'NO'} |"
            for c in self.checks
        ]
        return "\n".join(rows)

    def to_json(self) -> bytes:
        body = {"ok": self.ok, "checks": self.checks, "figures": self.figures}
        return orjson.dumps(body, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS)


def run(
    minutes: float = 10.0,
    kill_every: float = 30.0,
    both_down: float = 0.0,
    restart_after: float = 3.0,
    insts: tuple[str, ...] = DEFAULT_INSTRUMENTS,
    full_every_s: float = 5.0,
    settle_s: float = 180.0,
    workdir: Path | None = None,
    ticker_lag_max_ms: int | None = TICKER_LAG_MAX_MS,
) -> Result:
    """The whole acceptance run; returns its checks and figures (the stack is stopped)."""
    where = Path(workdir or tempfile.mkdtemp(prefix="redundant-"))
    where.mkdir(parents=True, exist_ok=True)
    stack = RedundantStack(where, insts, full_every_s)
    try:
        result = _drive(stack, minutes, kill_every, both_down, restart_after, settle_s)
    finally:
        stack.stop()
    worst = result.figures["ticker_lag_worst_ms"]
    if ticker_lag_max_ms is not None:  # a timing figure: the bench checks it, tests do not
        ok = 0 <= worst <= ticker_lag_max_ms
        result.check(
            "ticker state lag, worst while running (ms)", worst, ok, f"<= {ticker_lag_max_ms}"
        )
    return result


def _drive(
    s: RedundantStack,
    minutes: float,
    kill_every: float,
    both_down: float,
    restart_after: float,
    settle_s: float,
) -> Result:
    s.start_worker()
    s.start_beat()
    for name in FEEDERS:
        s.start_named_feeder(name)
    for name in FEEDERS:
        wait_for(lambda: s.live(name), 60, interval=0.2, what=f"{name} live\n" + s.logs())
    lag_ok = lambda: 0 <= ticker_lag_ms(s) <= TICKER_LAG_MAX_MS  # noqa: E731
    wait_for(lag_ok, 30, interval=0.2, what="ticker state current before the first kill")
    s.rebase()
    t0_ms, t0 = s.now_ms(), time.monotonic()
    kills: list[dict] = []  # one feeder down: {feeder, down_ms, live_ms}
    down: dict | None = None  # both down: {down_ms, live_ms}
    lags: list[tuple[int, int]] = []  # (sim ms, worst ticker lag ms)

    def idle(seconds: float) -> None:  # pacing of the schedule, sampling the state meanwhile
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            lags.append((s.now_ms(), ticker_lag_ms(s)))
            time.sleep(min(0.5, max(0.0, until - time.monotonic())))

    def restart(names: tuple[str, ...]) -> int:
        for name in names:
            s.start_named_feeder(name)
        for name in names:
            wait_for(lambda: s.live(name), 60, interval=0.1, what=f"{name} back\n" + s.logs())
        return s.now_ms()

    end, turn, stuck = t0 + minutes * 60, 0, 0
    next_kill = t0 + kill_every
    both_at = t0 + minutes * 30 if both_down else None
    while time.monotonic() < end:
        now = time.monotonic()
        if both_at is not None and now >= both_at:
            both_at = None
            for name in FEEDERS:
                wait_for(lambda: s.live(name), 30, interval=0.1, what=f"{name} live")
            down_ms = s.now_ms()
            for name in FEEDERS:
                s.kill(name)
            idle(both_down)
            down = {"down_ms": down_ms, "live_ms": restart(FEEDERS)}
            next_kill = time.monotonic() + kill_every
        elif now >= next_kill:
            victim, other = FEEDERS[turn % 2], FEEDERS[1 - turn % 2]
            turn += 1
            wait_for(lambda: s.live(other), 30, interval=0.1, what=f"{other} live\n" + s.logs())
            down_ms, before = s.now_ms(), ticker_ts(s)
            s.kill(victim)
            idle(restart_after)
            after = ticker_ts(s)  # the other feeder alone kept every ticker state moving?
            stuck += sum(1 for inst, ts in before.items() if after.get(inst, 0) <= ts)
            kills.append({"feeder": victim, "down_ms": down_ms, "live_ms": restart((victim,))})
            next_kill += kill_every
        else:
            idle(min(1.0, max(0.0, min(next_kill, end) - now)))
    mark = s.mark()
    ran_s = time.monotonic() - t0
    settled = True
    try:
        wait_for(lambda: s.exact(mark), settle_s, interval=0.5, what="backfill settled")
    except AssertionError:
        settled = False
    settle_took = time.monotonic() - t0 - ran_s
    result = Result()
    if not settled:  # what was still in the way when the deadline came
        result.figures["unsettled"] = {**s.backlog(), "comparison": s.last_comparison}
    result.figures.update(
        instruments=len(s.insts),
        minutes=round(ran_s / 60, 2),
        kills=len(kills),
        kill_every_s=kill_every,
        restart_after_s=restart_after,
        one_down_s=[round((k["live_ms"] - k["down_ms"]) / 1000, 1) for k in kills],
        both_down=down and {**down, "s": round((down["live_ms"] - down["down_ms"]) / 1000, 1)},
        settle_s=round(settle_took, 1),
        rest_calls=s.rest.calls.copy() if s.rest else {},
    )
    result.check("settled (queues empty, no open gap, stores exact)", settled, settled, "yes")
    result.check("ticker states that stood still while one feeder was down", stuck, not stuck, "0")
    evaluate(s, result, t0_ms, mark, down, lags)
    return result


def ticker_ts(s: RedundantStack) -> dict[str, int]:
    """The ts of each instrument's ticker state (state Redis; 0: none)."""
    pipe = s.state.pipeline(transaction=False)
    for inst in s.insts:
        pipe.hget(keys.ticker(inst), "ts")
    return {inst: int(v or 0) for inst, v in zip(s.insts, pipe.execute())}


def ticker_lag_ms(s: RedundantStack) -> int:
    """How far the ticker state trails okxsim's last ticker sent, worst instrument (-1: not
    measured)."""
    try:
        truth = {t["instId"]: int(t["ts"]) for t in s.get("/sim/truth/tickers")}
        held = ticker_ts(s)
    except (OSError, redis.RedisError, ValueError):
        return -1
    return max((max(0, ts - held.get(inst, 0)) for inst, ts in truth.items()), default=0)


def evaluate(
    s: RedundantStack, r: Result, t0_ms: int, mark: dict, down: dict | None, lags: list
) -> None:
    end_ms = int(mark["now_ms"])
    win = (down["down_ms"] - BEFORE_MS, down["live_ms"] + AFTER_MS) if down else None

    def in_down(lo: int, hi: int) -> bool:  # [lo, hi] meets the both-down window
        return win is not None and lo <= win[1] and hi >= win[0]

    db = s.mongo_reader[s.mongo_db]
    # 1. books: the feeders' periodic full books, then the workers' 1 s samples of `books`
    period = int(s.full_every_s * 1000)
    fulls: dict[tuple, list[int]] = {(i, c): [] for i in s.insts for c in BOOK_CHANNELS}
    for d in db[keys.BOOKS].find({"full": True}, {"instId": 1, "channel": 1, "ts": 1}):
        fulls.setdefault((d["instId"], d["channel"]), []).append(int(d["ts"]))
    missing_full = expected_full = 0
    for ts_list in fulls.values():
        points = [t0_ms, *sorted(t for t in ts_list if t0_ms < t < end_ms), end_ms]
        for a, b in zip(points, points[1:]):
            lost = max(0, -(-(b - a - SLACK_MS) // period) - 1)
            if in_down(a, b):
                expected_full += lost
            else:
                missing_full += lost
    r.check(
        f"books full-snapshot windows missing ({s.full_every_s:g} s)",
        missing_full,
        missing_full == 0,
        "0",
    )
    have = {d["_id"] for d in db[keys.BOOKS].find({"channel": "books", "full": False}, {"_id": 1})}
    missing_samples = 0
    for inst in s.insts:
        for w in range(t0_ms // SAMPLE_MS + 1, end_ms // SAMPLE_MS - 1):
            if f"{inst}:books:w{w * SAMPLE_MS}" not in have and not in_down(
                w * SAMPLE_MS, (w + 1) * SAMPLE_MS
            ):
                missing_samples += 1
    r.check("books 1 s samples missing", missing_samples, missing_samples == 0, "0")
    # 2. trades and orders against the truth
    comp = s.comparison(mark)
    trades = {
        k: sum(v[k] for n, v in comp.items() if n.startswith("trades"))
        for k in ("missing", "duplicated", "extra", "window")
    }
    r.figures["trades_compared"] = trades["window"]
    for k, label in (("missing", "missing"), ("duplicated", "duplicated"), ("extra", "invented")):
        r.check(f"trades {label}", trades[k], trades[k] == 0, "0")
    numbered = s.numbered_events()
    since = int(s.base["orders_since_ms"])
    truth = [
        o
        for o in s.get("/sim/truth/orders")
        if since <= int(o["cTime"]) and int(o["uTime"]) <= end_ms
    ]
    events = {(o["ordId"], o["uTime"], o["state"]) for o in truth}
    r.figures["order_events_compared"] = len(events)
    if down is None:  # one feeder always up: every event was pushed to a live feeder
        r.check(
            "order events without an order<N>",
            sum(1 for e in events if not numbered[e]),
            all(numbered[e] for e in events),
            "0",
        )
    else:  # REST history holds final states only: the down window's other events are gone
        r.check(
            "final order states missing",
            comp["orders"]["missing"],
            comp["orders"]["missing"] == 0,
            "0",
        )
    twice = sum(n - 1 for e, n in numbered.items() if e in events and n > 1)
    r.check("order events numbered twice", twice, twice == 0, "0")
    r.check(
        "order<N> of no truth event", comp["orders"]["extra"], comp["orders"]["extra"] == 0, "0"
    )
    # 3. the ticker state while running (both-down window excluded) and at the end
    running = [lag for at, lag in lags if not in_down(at, at)]
    r.figures["ticker_lag_worst_ms"] = max((lag for lag in running if lag >= 0), default=-1)
    r.figures["ticker_lag_unmeasured"] = sum(1 for lag in running if lag < 0)
    measured = sorted(lag for lag in running if lag >= 0)
    if measured:
        r.figures["ticker_lag_ms"] = {
            "samples": len(measured),
            "p50": measured[len(measured) // 2],
            "p99": measured[int(len(measured) * 0.99)],
            "max_at_s": round((max(lags, key=lambda x: x[1])[0] - t0_ms) / 1000, 1),
        }
    # 4. the gap ledger and REST
    gaps = [g for g in s.gap_ledger() if int(g.get("created_ms", 0)) >= t0_ms - 60_000]
    r.figures["gaps"] = dict(Counter(f"{g['status']} {g['channel']} {g['cause']}" for g in gaps))
    open_ = [g for g in gaps if g["status"] != "covered"]
    inside = [g for g in open_ if in_down(int(g["start_ms"]), int(g["end_ms"]))]
    outside = [g for g in open_ if g not in inside]
    r.figures["covered_gaps"] = len(gaps) - len(open_)
    rest = s.rest.count(REPAIR_PATHS) if s.rest else {}
    r.figures["rest_account_snapshots"] = sum(
        (s.rest.count(ACCOUNT_PATHS) if s.rest else {}).values()
    )
    if down is None:  # every window had the other feeder up: no repair call is owed
        calls = sum(rest.values())
        r.check("REST backfill calls for covered windows (proxy)", calls, calls == 0, "0")
    else:  # repairs outside the down window, from the ledger (at least one call per gap)
        calls = sum(max(1, int(g.get("pages") or 0)) for g in outside if g["status"] != "open")
        r.check("REST backfill calls for covered windows (ledger)", calls, calls == 0, "0")
        trades_calls = rest.get("/api/v5/market/history-trades", 0)
        r.check("history-trades calls for the down window", trades_calls, trades_calls > 0, "> 0")
    bad = [g for g in outside if g["status"] == "unrepairable"]
    r.check(
        "unrepairable gaps" + (" outside the down window" if down else ""), len(bad), not bad, "0"
    )
    if down is None:
        return
    streams = {(c, i) for c in PUBLIC for i in s.insts}
    got = {(g["channel"], g["instId"]) for g in inside}
    r.check(
        "public streams with a gap over the down window",
        len(streams & got),
        streams <= got,
        f"{len(streams)}",
    )
    stray = [
        g
        for g in inside
        if g["channel"] in PUBLIC and (int(g["start_ms"]) < win[0] or int(g["end_ms"]) > win[1])
    ]
    r.check(
        f"down-window gaps with bounds past the window (-{BEFORE_MS} / +{AFTER_MS} ms)",
        len(stray),
        not stray,
        "0",
    )
    wrong = [
        g
        for g in inside
        if g["status"] != ("unrepairable" if g["channel"] in NO_HISTORY else "filled")
    ]
    r.check(
        "down-window gaps not filled (trades, orders) / unrepairable (books, tickers)",
        len(wrong),
        not wrong,
        "0",
    )
    per_stream = Counter((g["channel"], g["instId"]) for g in inside)
    twice = sum(1 for n in per_stream.values() if n > 1)
    r.check("streams with more than one gap over the down window", twice, twice == 0, "0")
    r.figures["down_gaps"] = {
        "by": dict(Counter(f"{g['status']} {g['channel']} {g['feeder']}" for g in inside)),
        "start_before_kill_ms_max": max(down["down_ms"] - int(g["start_ms"]) for g in inside),
        "end_after_live_ms_max": max(int(g["end_ms"]) - down["live_ms"] for g in inside),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--kill-every", type=float, default=30.0)
    p.add_argument("--restart-after", type=float, default=3.0)
    p.add_argument("--both-down", type=float, default=0.0, help="both feeders down N s, once")
    p.add_argument("--instruments", type=int, default=len(DEFAULT_INSTRUMENTS))
    p.add_argument("--full-book-every", type=float, default=5.0)
    p.add_argument("--settle", type=float, default=180.0)
    p.add_argument("--ticker-lag-max", type=int, default=TICKER_LAG_MAX_MS, help="ms; 0: no check")
    p.add_argument("--workdir", type=Path)
    p.add_argument("--json", action="store_true", help="the result as JSON on stdout")
    a = p.parse_args(argv)
    if not 1 <= a.instruments <= len(DEFAULT_INSTRUMENTS) or a.kill_every <= a.restart_after:
        p.error(f"--instruments 1..{len(DEFAULT_INSTRUMENTS)}, --kill-every > --restart-after")
    result = run(
        a.minutes,
        a.kill_every,
        a.both_down,
        a.restart_after,
        DEFAULT_INSTRUMENTS[: a.instruments],
        a.full_book_every,
        a.settle,
        a.workdir,
        a.ticker_lag_max or None,
    )
    if a.json:
        sys.stdout.buffer.write(result.to_json() + b"\n")
    else:
        print(result.table())
        print(orjson.dumps(result.figures, option=orjson.OPT_NON_STR_KEYS).decode())
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
