"""Order-book throughput: naive baseline vs okx.book.OrderBook, measured in the same run.

    .venv/bin/python bench/book.py [--updates 20000] [--chunk 200] [--seed 7]
                                   [--replay-repeats 3] [--json]

The stream is deterministic (seeded): a 400-level-a-side snapshot, then updates of about 20 level
changes each (size changes, inserts, deletes of held prices, deletes of unknown prices), chained
seqIds, and checksums computed by the naive baseline below, so verification has to succeed. The
generator keeps OKX's 400-level window itself (it sends explicit deletes for levels pushed out).

Two measurements of each variant (msg/s):
  interleaved   the stream is generated chunk by chunk and every variant is timed on each fresh
                chunk (median over chunks): frames are applied right after they are made, as in
                the feeder, but caches are disturbed between chunks
  replay        the whole stream is generated first, then replayed per variant in a tight loop
                (median of --replay-repeats runs): the way the perf-anchors figures were taken

Variants:
  baseline        dict keyed by price string, full sort of both sides after every message
  baseline+cs     same, plus the OKX checksum built naively from the sorted sides
  dict-only       dict, no sorted view at all (the perf-anchors "sort on read" shape): a floor
  book            OrderBook, checksum field 0 (seqId checks only)
  book+cs         OrderBook, checksum verified on every message
  book+top25      OrderBook, seqId checks, and the top 25 levels a side read after every
                  message: what the feeder does (it publishes the top N of every accepted message)
  pure            OrderBook forced onto its pure-Python loop (as with OKX_BOOK_PURE=1)
  pure+cs         the same, checksum verified on every message

The book* variants use the compiled loop (okx._bookaccel) when it is built; the header line
says which. Without the extension, book and pure measure the same code.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import statistics
import sys
import time
import zlib

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from okx.book import ACCELERATED, OrderBook  # noqa: E402
from okx.records import BookData  # noqa: E402

DEPTH = 400
TICK = 10  # prices are integer ticks of 0.1


# ----- naive baseline: the reference the stream's checksums come from ---------------------------


class NaiveBook:
    """dict price-string -> level, sorted in full after each message."""

    def __init__(self, checksum: bool):
        self.checksum = checksum
        self.bids: dict[str, list] = {}
        self.asks: dict[str, list] = {}
        self.seq = None
        self.sorted_bids: list = []
        self.sorted_asks: list = []

    def apply(self, m: BookData) -> bool:
        if m.action == "snapshot":
            self.bids = {lv[0]: lv for lv in m.bids}
            self.asks = {lv[0]: lv for lv in m.asks}
        else:
            if m.prevSeqId != self.seq:
                raise AssertionError("gap")
            for side, levels in ((self.bids, m.bids), (self.asks, m.asks)):
                for lv in levels:
                    if float(lv[1]) == 0:
                        side.pop(lv[0], None)
                    else:
                        side[lv[0]] = lv
        self.seq = m.seqId
        self.sorted_bids = sorted(self.bids.values(), key=lambda lv: float(lv[0]), reverse=True)
        self.sorted_asks = sorted(self.asks.values(), key=lambda lv: float(lv[0]))
        if self.checksum and m.checksum:
            return naive_checksum(self.sorted_bids, self.sorted_asks) == m.checksum
        return True


def naive_checksum(bids: list, asks: list) -> int:
    parts = []
    for i in range(25):
        if i < len(bids):
            parts.append(bids[i][0])
            parts.append(bids[i][1])
        if i < len(asks):
            parts.append(asks[i][0])
            parts.append(asks[i][1])
    v = zlib.crc32(":".join(parts).encode())
    return v - 2**32 if v >= 2**31 else v


class BookTopRead:
    """OrderBook plus a top-25 read per message, as the feeder's pipeline does."""

    def __init__(self):
        self.book = OrderBook("books", "BTC-USDT")

    @property
    def valid(self) -> bool:
        return self.book.valid

    @property
    def reason(self):
        return self.book.reason

    def top(self, n=None):
        return self.book.top(n)

    def apply(self, m: BookData):
        r = self.book.apply(m)
        self.book.top(25)
        return r


class DictOnly:
    """dict per side and a seqId check; no sorted view (sorting would happen on read)."""

    def __init__(self):
        self.bids: dict = {}
        self.asks: dict = {}
        self.seq = None

    def apply(self, m: BookData) -> bool:
        if m.action == "snapshot":
            self.bids = {lv[0]: lv for lv in m.bids}
            self.asks = {lv[0]: lv for lv in m.asks}
        else:
            if m.prevSeqId != self.seq:
                raise AssertionError("gap")
            for side, levels in ((self.bids, m.bids), (self.asks, m.asks)):
                for lv in levels:
                    if lv[1] == "0":
                        side.pop(lv[0], None)
                    else:
                        side[lv[0]] = lv
        self.seq = m.seqId
        return True


# ----- stream generator ---------------------------------------------------------------------------


def _px(tick: int) -> str:
    return f"{tick // TICK}.{tick % TICK}"


def _size(rng: random.Random) -> str:
    if rng.random() < 0.5:
        return str(rng.randint(1, 3000))
    return f"{rng.uniform(0.0001, 9):.4f}"


def _level(rng: random.Random, tick: int) -> list:
    return [_px(tick), _size(rng), "0", str(rng.randint(1, 40))]


def stream(seed: int, changes: int = 20):
    """Yield a snapshot, then updates forever, with chained seqIds and the baseline's checksums."""
    rng = random.Random(seed)
    mid = 30000 * TICK
    bids: dict[int, list] = {}  # tick -> level: the generator's truth
    asks: dict[int, list] = {}
    t = mid - 1
    while len(bids) < DEPTH:
        bids[t] = _level(rng, t)
        t -= rng.randint(1, 3)
    t = mid + 1
    while len(asks) < DEPTH:
        asks[t] = _level(rng, t)
        t += rng.randint(1, 3)
    # Ticks ordered best first, kept in step with the dicts (the generator's own index).
    bid_ticks = sorted(bids, reverse=True)
    ask_ticks = sorted(asks)
    ref = NaiveBook(checksum=True)
    seq = 1000
    ts = 1_700_000_000_000
    snap = BookData(
        "books",
        "BTC-USDT",
        "snapshot",
        [asks[k] for k in ask_ticks],
        [bids[k] for k in bid_ticks],
        ts,
        seq,
        -1,
        0,
    )
    ref.apply(snap)
    yield dataclasses.replace(snap, checksum=naive_checksum(ref.sorted_bids, ref.sorted_asks))
    while True:
        n = max(2, int(rng.gauss(changes, 5)))
        bid_changes: dict[int, list] = {}
        ask_changes: dict[int, list] = {}
        best_bid = bid_ticks[0]
        best_ask = ask_ticks[0]
        for _ in range(3 * n):
            if len(bid_changes) + len(ask_changes) >= n:
                break
            is_bid = rng.random() < 0.5
            side, ch, ticks = (
                (bids, bid_changes, bid_ticks) if is_bid else (asks, ask_changes, ask_ticks)
            )
            r = rng.random()
            if r < 0.55:  # size change of a held level, biased to the top of the book
                tick = ticks[min(int(rng.expovariate(1 / 40)), len(ticks) - 1)]
                if tick not in ch:
                    ch[tick] = _level(rng, tick)
            elif r < 0.77:  # insert a new price; sometimes improves the best, never crosses
                if is_bid:
                    tick = min(best_bid + 3, best_ask - 1) - int(rng.expovariate(1 / 60))
                else:
                    tick = max(best_ask - 3, best_bid + 1) + int(rng.expovariate(1 / 60))
                if tick not in side and tick not in ch:
                    ch[tick] = _level(rng, tick)
                    if is_bid:
                        best_bid = max(best_bid, tick)
                    else:
                        best_ask = min(best_ask, tick)
            elif r < 0.95:  # delete a held level
                if len(ticks) > 5:
                    tick = ticks[min(int(rng.expovariate(1 / 60)), len(ticks) - 1)]
                    if tick not in ch:
                        ch[tick] = [_px(tick), "0", "0", "0"]
            else:  # delete of a price never held (normal on OKX)
                tick = (
                    (best_ask - rng.randint(1, 800)) if is_bid else (best_bid + rng.randint(1, 800))
                )
                if tick not in side and tick not in ch:
                    ch[tick] = [_px(tick), "0", "0", "0"]
        for side, ch in ((bids, bid_changes), (asks, ask_changes)):
            for tick, lv in ch.items():
                if lv[1] == "0":
                    side.pop(tick, None)
                else:
                    side[tick] = lv
        # Keep the 400-level window with explicit deletes, as OKX does.
        for side, ch in ((bids, bid_changes), (asks, ask_changes)):
            if len(side) > DEPTH:
                ordered = sorted(side, reverse=side is bids)
                for tick in ordered[DEPTH:]:
                    del side[tick]
                    ch[tick] = [_px(tick), "0", "0", "0"]
        bid_ticks = sorted(bids, reverse=True)
        ask_ticks = sorted(asks)
        prev, seq = seq, seq + rng.randint(1, 4)
        ts += rng.randint(1, 100)
        m = BookData(
            "books",
            "BTC-USDT",
            "update",
            list(ask_changes.values()),
            list(bid_changes.values()),
            ts,
            seq,
            prev,
            0,
        )
        ref.apply(m)
        yield dataclasses.replace(m, checksum=naive_checksum(ref.sorted_bids, ref.sorted_asks))


def generate(n_updates: int, seed: int, changes: int = 20) -> list[BookData]:
    """Snapshot + n_updates updates, as a list."""
    it = stream(seed, changes)
    return [next(it) for _ in range(n_updates + 1)]


class PureBook(OrderBook):
    """OrderBook on its pure-Python loop, whatever this process imported."""

    __slots__ = ()
    _accel_side = None


# ----- measurement ------------------------------------------------------------------------------

VARIANTS = {
    # name: (factory, uses the stream's checksums)
    "baseline": (lambda: NaiveBook(checksum=False), False),
    "baseline+cs": (lambda: NaiveBook(checksum=True), True),
    "dict-only": (DictOnly, False),
    "book": (lambda: OrderBook("books", "BTC-USDT"), False),
    "book+cs": (lambda: OrderBook("books", "BTC-USDT"), True),
    "book+top25": (BookTopRead, False),
    "pure": (lambda: PureBook("books", "BTC-USDT"), False),
    "pure+cs": (lambda: PureBook("books", "BTC-USDT"), True),
}
CHECKED = ("book", "book+cs", "book+top25", "pure", "pure+cs")  # must stay valid and end equal


def _timed(apply, msgs: list[BookData]) -> float:
    t0 = time.perf_counter()
    for m in msgs:
        apply(m)
    return time.perf_counter() - t0


def measure_hot(n_updates: int, seed: int, chunk: int) -> tuple[dict, dict]:
    """Generate the stream chunk by chunk and time every variant on each fresh chunk.

    This mimics the feeder, where a frame is parsed just before it is applied, so its objects are
    in cache. Returns (median msg/s over chunks, stream stats).
    """
    it = stream(seed)
    books = {name: make() for name, (make, _) in VARIANTS.items()}
    snap = next(it)
    snap0 = dataclasses.replace(snap, checksum=0)
    for name, (_, cs) in VARIANTS.items():
        books[name].apply(snap if cs else snap0)
    names = list(VARIANTS)
    rates: dict[str, list[float]] = {name: [] for name in names}
    totals = {name: 0.0 for name in names}
    n_changes = n_deletes = done = 0
    i = 0
    while done < n_updates:
        msgs = [next(it) for _ in range(min(chunk, n_updates - done))]
        msgs0 = [dataclasses.replace(m, checksum=0) for m in msgs]
        done += len(msgs)
        for m in msgs:
            n_changes += len(m.bids) + len(m.asks)
            n_deletes += sum(1 for lv in m.bids + m.asks if lv[1] == "0")
        order = names[i % len(names) :] + names[: i % len(names)]  # rotate: no fixed cache order
        i += 1
        for name in order:
            dt = _timed(books[name].apply, msgs if VARIANTS[name][1] else msgs0)
            rates[name].append(len(msgs) / dt)
            totals[name] += dt
        for name in CHECKED:
            if not books[name].valid:
                raise SystemExit(f"{name} went invalid: {books[name].reason}")
    ref = books["baseline"]
    for name in CHECKED:
        if books[name].top() != (ref.sorted_bids, ref.sorted_asks):
            raise SystemExit(f"{name}: final book differs from the baseline")
    stats = {
        "changes_per_update": n_changes / done,
        "deletes_per_update": n_deletes / done,
        "aggregate_msg_per_s": {k: done / v for k, v in totals.items()},
    }
    return {k: statistics.median(v) for k, v in rates.items()}, stats


def measure_replay(n_updates: int, seed: int, repeats: int) -> dict:
    """Pre-generate the whole stream, then replay it per variant; median of `repeats` runs.

    The way the perf-anchors figures were taken: each variant runs alone in a tight loop, its
    own structures warm, the messages streamed from memory.
    """
    msgs = generate(n_updates, seed)
    msgs0 = [dataclasses.replace(m, checksum=0) for m in msgs]
    runs: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(repeats):
        for name, (make, cs) in VARIANTS.items():
            seq = msgs if cs else msgs0
            book = make()
            book.apply(seq[0])
            runs[name].append(n_updates / _timed(book.apply, seq[1:]))
    return {k: statistics.median(v) for k, v in runs.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--updates", type=int, default=20000)
    ap.add_argument(
        "--chunk", type=int, default=200, help="messages generated, then timed, at once"
    )
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument(
        "--replay-repeats",
        type=int,
        default=3,
        help="runs of the pre-generated replay (0 = skip it)",
    )
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    rates, stats = measure_hot(args.updates, args.seed, args.chunk)
    cold = (
        measure_replay(args.updates, args.seed, args.replay_repeats)
        if args.replay_repeats
        else None
    )
    result = {
        "python": sys.version.split()[0],
        "updates": args.updates,
        "chunk": args.chunk,
        "seed": args.seed,
        "level_changes_per_update": round(stats["changes_per_update"], 1),
        "deletes_per_update": round(stats["deletes_per_update"], 1),
        "msg_per_s": {k: round(v) for k, v in rates.items()},
        "us_per_msg": {k: round(1e6 / v, 2) for k, v in rates.items()},
        "aggregate_msg_per_s": {k: round(v) for k, v in stats["aggregate_msg_per_s"].items()},
        "ratio_book_vs_baseline": round(rates["book"] / rates["baseline"], 1),
        "ratio_book_cs_vs_baseline_cs": round(rates["book+cs"] / rates["baseline+cs"], 1),
        "accelerated": ACCELERATED,
        "ratio_book_vs_pure": round(rates["book"] / rates["pure"], 2),
        "replay_msg_per_s": {k: round(v) for k, v in cold.items()} if cold else None,
        "elapsed_s": round(time.perf_counter() - t0, 1),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(
        f"stream: {args.updates} updates, {stats['changes_per_update']:.1f} level changes each "
        f"({stats['deletes_per_update']:.1f} of them deletes), 400 levels a side, seed "
        f"{args.seed}; median over chunks of {args.chunk}"
    )
    print(
        "book* variants: "
        + (
            "compiled loop (okx._bookaccel)"
            if ACCELERATED
            else "pure-Python loop (extension not built or OKX_BOOK_PURE=1)"
        )
    )
    head = f"{'variant':<14}{'msg/s':>11}{'us/msg':>9}{'vs baseline':>13}"
    print(head + (f"{'replay msg/s':>14}{'vs baseline':>13}" if cold else ""))
    for name, rate in rates.items():
        base = rates["baseline+cs"] if name.endswith("+cs") else rates["baseline"]
        line = f"{name:<14}{rate:>11,.0f}{1e6 / rate:>9.2f}{rate / base:>12.1f}x"
        if cold:
            cbase = cold["baseline+cs"] if name.endswith("+cs") else cold["baseline"]
            line += f"{cold[name]:>14,.0f}{cold[name] / cbase:>12.1f}x"
        print(line)
    print(f"elapsed {result['elapsed_s']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
