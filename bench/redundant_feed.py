"""A realistic feed for bench/redundant_workers.py, and how two redundant feeders cut it.

Pure: records and task lists, no I/O. One feed of `seconds` of market time on `instruments`
instruments (rates per instrument and second, roughly a liquid OKX spot market):

    books5   10 pushes (5 levels)            books   10 pushes (25 levels, FEEDER_BOOK_DEPTH)
    tickers   5                              trades  20 on the first instrument, 3 on the others
    orders    1 a second over all            full    one 400-level `books` snapshot and one
                                                     books5 snapshot per instrument, at start

A feeder publishes whatever its readers queued since its last publish cycle (collector/
publisher.py): per kind up to 500 records, one mixed task when several kinds fit in 500. Two
redundant feeders see the same records; their cycles fall at different moments, so their
batches are cut differently. `cut` draws the cycle moments at random (exponential gaps of mean
`cycle_ms`): a small mean is a quiet market whose workers keep up (tasks of a frame or two), a
large one a busy market whose feeder lingers because the workers are behind.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from core.contract import INGEST_MIXED_TASK, INGEST_TASKS, make_batch

T0 = 1_700_000_000_000
BATCH_MAX = 500


@dataclass(frozen=True)
class Task:
    at_ms: float  # when the feeder published it (feed time)
    name: str
    args: list  # the task's positional arguments: [envelope] or [[envelopes]]
    records: int


def _levels(n: int, base: float, step: float) -> list[list[str]]:
    return [
        [f"{base + i * step:.1f}", f"{1 + i % 7}.{i % 10}", "0", str(1 + i % 4)] for i in range(n)
    ]


def _book(inst: str, channel: str, ts: int, seq: int, depth: int, full: bool) -> dict:
    return {
        "instId": inst,
        "channel": channel,
        "ts": str(ts),
        "seqId": seq,
        "asks": _levels(depth, 35000.1 + seq % 5, 0.1),
        "bids": _levels(depth, 35000.0 - seq % 5, -0.1),
        "depth": depth,
        "full": full,
    }


def feed(seconds: float = 20.0, instruments: int = 9, seed: int = 1) -> list[tuple[int, str, dict]]:
    """[(feed time ms, kind, record)] in feed-time order."""
    rng = random.Random(seed)
    insts = [f"COIN{i}-USDT" for i in range(instruments)]
    out: list[tuple[int, str, dict]] = []
    seq = dict.fromkeys(insts, 1000)
    trade_id = dict.fromkeys(insts, 500_000)
    for inst in insts:
        out.append((0, "books", _book(inst, "books", T0, seq[inst], 400, True)))
        out.append((0, "books", _book(inst, "books5", T0, seq[inst], 5, True)))
    end = int(seconds * 1000)
    for inst_no, inst in enumerate(insts):
        trade_rate = 20 if inst_no == 0 else 3
        events = [(t, "books5") for t in range(0, end, 100)]
        events += [(t + 50, "books") for t in range(0, end, 100)]
        events += [(t + 20, "tickers") for t in range(0, end, 200)]
        events += [(int(rng.uniform(0, end)), "trades") for _ in range(int(trade_rate * seconds))]
        for t, what in events:
            ts = T0 + t
            if what in ("books5", "books"):
                seq[inst] += 1
                depth = 5 if what == "books5" else 25
                out.append((t, "books", _book(inst, what, ts, seq[inst], depth, False)))
            elif what == "tickers":
                out.append((t, "tickers", _ticker(inst, ts)))
            else:
                trade_id[inst] += 1
                out.append((t, "trades", _trade(inst, str(trade_id[inst]), ts)))
    for n in range(int(seconds)):
        t = n * 1000 + 500
        out.append((t, "orders", _order(str(900_000 + n), T0 + t)))
    out.sort(key=lambda e: e[0])
    return out


def _ticker(inst: str, ts: int) -> dict:
    return {
        "instType": "SPOT", "instId": inst, "last": "35000.5", "lastSz": "0.01",
        "askPx": "35000.6", "askSz": "1", "bidPx": "35000.4", "bidSz": "2", "open24h": "34000",
        "high24h": "36000", "low24h": "33000", "volCcy24h": "1000", "vol24h": "0.03",
        "sodUtc0": "34500", "sodUtc8": "34600", "ts": str(ts),
    }  # fmt: skip


def _trade(inst: str, trade_id: str, ts: int) -> dict:
    return {
        "instId": inst, "tradeId": trade_id, "px": "35000.5", "sz": "0.01", "side": "buy",
        "ts": str(ts), "count": "1", "source": "0", "seqId": None, "channel": "trades-all",
    }  # fmt: skip


def _order(ord_id: str, ts: int) -> dict:
    return {
        "instType": "SPOT", "instId": "COIN0-USDT", "ordId": ord_id, "clOrdId": "",
        "tradeId": f"t{ord_id}", "state": "filled", "px": "35000.1", "sz": "2", "side": "buy",
        "ordType": "limit", "cTime": str(ts - 5000), "uTime": str(ts), "fillSz": "2",
        "accFillSz": "2",
    }  # fmt: skip


def cut(
    events: list[tuple[int, str, dict]],
    *,
    producer: str,
    shard: str,
    cycle_ms: float,
    seed: int,
) -> list[Task]:
    """The tasks one feeder publishes for `events`, its publish cycles `cycle_ms` apart on
    average (the first at a random offset, so two feeders' boundaries never line up)."""
    rng = random.Random(seed)
    tasks: list[Task] = []
    batch_no = 0
    i = 0
    at = rng.expovariate(1 / cycle_ms)
    while i < len(events):
        queued: dict[str, list[dict]] = {}
        while i < len(events) and events[i][0] <= at:
            queued.setdefault(events[i][1], []).append(events[i][2])
            i += 1
        chunks = [
            (k, rs[j : j + BATCH_MAX])
            for k, rs in queued.items()
            for j in range(0, len(rs), BATCH_MAX)
        ]
        envelopes = []
        for kind, recs in chunks:
            batch_no += 1
            env = make_batch(kind, recs, source="ws", producer=producer, batch=batch_no, sent_ms=T0)
            env["shard"] = shard
            envelopes.append(env)
        total = sum(len(r) for _k, r in chunks)
        if len(envelopes) > 1 and total <= BATCH_MAX:
            tasks.append(Task(at, INGEST_MIXED_TASK, [envelopes], total))
        else:
            tasks += [Task(at, INGEST_TASKS[e["kind"]], [e], len(e["records"])) for e in envelopes]
        at += rng.expovariate(1 / cycle_ms)
    return tasks


def interleave(a: list[Task], b: list[Task], *, lag_ms: float = 0.0) -> list[Task]:
    """Both feeders' tasks in the order they reach the broker (`b` `lag_ms` behind `a`)."""
    shifted = [Task(t.at_ms + lag_ms, t.name, t.args, t.records) for t in b]
    return sorted(a + shifted, key=lambda t: t.at_ms)
