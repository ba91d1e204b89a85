"""The pure data path: raw frame -> parse -> dedupe -> order book -> records for the outbox, plus
the bookkeeping that finds gaps (reconnect windows, seqId breaks, stale periods). No I/O, no
clock: callers pass times in; one thread at a time (the feeder holds a lock around it).

Outputs:
    sink(kind, channel, instId, ts_ms, id, payload, t_recv)   one record to publish
    self.gaps        deque of core.gaps.Gap values for the ledger
    self.marks       (channel, instId) -> (ts_ms, id, seen_ms): watermarks, read periodically
    self.first       (channel, instId) -> (ts_ms, id, count): first record of this run (startup gap)
    due_resyncs()    books to fetch from REST; offer_snapshot() hands the result back
    self.resubscribe deque of (channel, instId) whose book needs the unsubscribe/subscribe fallback

Ownership: each (channel, instId) belongs to the connection whose data is used. A replacement
connection (64008) takes over a book when it delivers a snapshot (its chain starts there), other
channels on its first push; trades are taken from every connection and deduplicated by tradeId,
which loses nothing while both overlap.
"""
from __future__ import annotations

import logging
from collections import Counter, deque
from typing import Any, Callable

from core.gaps import Gap
from okx.book import OK_STATUSES, BookStatus, OrderBook
from okx.channels import INCREMENTAL_BOOK_CHANNELS, KIND_OF_CHANNEL, PRIVATE_CHANNELS
from okx.parse import parse_frame
from okx.records import (
    Balance, BookData, Candle, Data, Event, Order, ParseError, Pong, Position, Ticker, Trade,
    Unknown,
)

Sink = Callable[[str, str, str, int, str, dict, float], None]

KIND_OF_RECORD = {Trade: "trades", Ticker: "tickers", Candle: "candles", Order: "orders",
                  Balance: "balances", Position: "positions"}
REST_DEPTH = {"books": 400, "books-l2-tbt": 400, "books50-l2-tbt": 50}
BOOK_DEPTH = {"books": 400, "books-l2-tbt": 400, "books50-l2-tbt": 50}
RESYNC_ATTEMPTS = 5
log = logging.getLogger("collector.pipeline")

FAIL_CAUSE = {BookStatus.GAP: "seq_gap", BookStatus.CHECKSUM_MISMATCH: "checksum",
              BookStatus.CROSSED: "crossed", BookStatus.BAD_LEVEL: "bad_data"}


def record_mark(rec: Any) -> tuple[int, str]:
    """(exchange time ms, id) that versions a record, for watermarks and gap bounds."""
    t = type(rec)
    if t is Trade:
        return rec.ts, rec.tradeId
    if t is Ticker or t is Candle:
        return rec.ts, ""
    if t is Order:
        return rec.uTime, rec.ordId
    if t is Balance:
        return rec.uTime, rec.ccy
    return rec.uTime, rec.posId


def data_key(data: Data) -> tuple[str, str]:
    arg = data.arg
    return data.channel, arg.get("instId") or arg.get("instType") or ""


class LogLimiter:
    """At most one log line per category every `every` seconds; counts what it suppressed."""

    def __init__(self, every: float = 10.0) -> None:
        self.every = every
        self._next: dict[str, float] = {}
        self._suppressed: Counter = Counter()

    def allow(self, category: str, now: float) -> tuple[bool, int]:
        if now >= self._next.get(category, 0.0):
            self._next[category] = now + self.every
            n = self._suppressed.pop(category, 0)
            return True, n
        self._suppressed[category] += 1
        return False, 0


def error_category(reason: str) -> str:
    return reason.split(":", 1)[0][:48]


class Pipeline:
    def __init__(self, sink: Sink, *, depth_stored: int = 25, full_every_ms: int = 60_000,
                 resync_min_interval_ms: int = 1_000, verify_checksum: bool = True) -> None:
        self.sink = sink
        self.depth_stored = depth_stored
        self.full_every_ms = full_every_ms
        self.resync_min_interval_ms = resync_min_interval_ms
        self.verify_checksum = verify_checksum
        self.books: dict[tuple, OrderBook] = {}
        self.owner: dict[tuple, Any] = {}
        self.successor: dict[Any, Any] = {}      # old conn id -> replacement conn id
        self.last_trade: dict[tuple, int] = {}
        self.marks: dict[tuple, tuple] = {}
        self.first: dict[tuple, tuple] = {}
        self.lost: dict[tuple, tuple] = {}       # key -> (cause, ts, id, since_ms)
        self.book_last: dict[tuple, tuple] = {}  # key -> (ts, seqId) of the last valid state
        self.book_fail: dict[tuple, tuple] = {}  # key -> (cause, reason, ts, seqId)
        self.last_full: dict[tuple, int] = {}
        self.resyncs: dict[tuple, dict] = {}     # in flight: key -> {due, attempts, fetching}
        self.last_resync: dict[tuple, int] = {}
        self.gaps: deque[Gap] = deque()
        self.resubscribe: deque = deque()
        # counters (exported by health.py)
        self.frames = 0
        self.by_channel: Counter = Counter()
        self.parse_errors: Counter = Counter()
        self.unknown: Counter = Counter()
        self.book_status: Counter = Counter()
        self.resync_count: Counter = Counter()
        self.duplicates = 0
        self.overlap_dropped = 0
        self.records_out = 0

    # ----- frames --------------------------------------------------------------------------------

    def feed(self, conn: Any, raw: str | bytes, now_ms: int, t_recv: float = 0.0
             ) -> Data | Event | Pong | ParseError | Unknown:
        """Process one received frame; return the parse result (the caller routes events)."""
        self.frames += 1
        result = parse_frame(raw)
        t = type(result)
        if t is Data:
            self._data(conn, result, now_ms, t_recv)
        elif t is ParseError:
            self.parse_errors[error_category(result.reason)] += 1
        elif t is Unknown:
            self.unknown[error_category(result.reason)] += 1
        return result

    def _data(self, conn: Any, data: Data, now_ms: int, t_recv: float) -> None:
        channel = data.channel
        self.by_channel[channel] += 1
        records = data.records
        if not records:
            return
        first = records[0]
        if type(first) is BookData:
            for rec in records:
                self._book(conn, rec, now_ms, t_recv)
            return
        arg = data.arg
        key = (channel, arg.get("instId") or arg.get("instType") or "")
        owner = self.owner.get(key)
        if owner is None:
            self.owner[key] = conn
        elif owner is not conn and type(first) is not Trade and channel not in PRIVATE_CHANNELS:
            if self.successor.get(owner) is conn:
                self.owner[key] = conn       # the replacement takes over on its first push
            else:
                self.overlap_dropped += 1
                return
        sink = self.sink
        if type(first) is Trade:
            last = self.last_trade.get(key)
            for rec in records:
                tid = int(rec.tradeId)
                if last is not None and tid <= last:
                    self.duplicates += 1
                    continue
                if key not in self.first or (self.lost and key in self.lost):
                    self._reopen(key, rec.ts, rec.tradeId, int(rec.count or 1), now_ms)
                last = tid
                self.last_trade[key] = tid
                self.marks[key] = (rec.ts, rec.tradeId, now_ms)
                sink("trades", channel, rec.instId, rec.ts, rec.tradeId, rec.to_payload(), t_recv)
                self.records_out += 1
            return
        kind = KIND_OF_CHANNEL[channel]
        for rec in records:
            ts, rid = record_mark(rec)
            if key in self.lost or key not in self.first:
                self._reopen(key, ts, rid, 1, now_ms)
            self.marks[key] = (ts, rid, now_ms)
            rkind = KIND_OF_RECORD.get(type(rec), kind)
            sink(rkind, channel, key[1], ts, rid, rec.to_payload(), t_recv)
            self.records_out += 1

    def _reopen(self, key: tuple, ts: int, rid: str, count: int, now_ms: int) -> None:
        """First record of `key` in this run or after a loss: close the open gap, if any."""
        if key not in self.first:
            self.first[key] = (ts, rid, count)
        lost = self.lost.pop(key, None)
        if lost is None:
            return
        cause, last_ts, last_id, since_ms = lost
        end_id = rid
        if key[0] in ("trades", "trades-all") and last_id and rid:
            first_covered = int(rid) - count + 1
            if first_covered == int(last_id) + 1:
                return  # contiguous: nothing was missed
            end_id = str(first_covered)
        self.gaps.append(Gap(key[0], key[1], last_ts or since_ms, ts, cause, start_id=last_id,
                             end_id=end_id,
                             reason=f"{cause}: no data from {key[0]} {key[1]} between these "
                                    "bounds"))

    # ----- books ---------------------------------------------------------------------------------

    def _book(self, conn: Any, msg: BookData, now_ms: int, t_recv: float) -> None:
        channel = msg.channel
        key = (channel, msg.instId)
        owner = self.owner.get(key)
        if owner is not conn:
            if owner is None:
                self.owner[key] = conn
            elif self.successor.get(owner) is conn and msg.action != "update":
                self.owner[key] = conn   # replacement's snapshot takes over
            else:
                self.overlap_dropped += 1
                return
        book = self.books.get(key)
        if book is None:
            book = self.books[key] = OrderBook(channel, msg.instId, BOOK_DEPTH.get(channel),
                                               verify_checksum=self.verify_checksum)
        result = book.apply(msg)
        status = result.status
        counts = self.book_status
        counts[status] = counts.get(status, 0) + 1
        if status in OK_STATUSES:
            if status is BookStatus.STALE:
                return
            self._book_ok(key, book, now_ms, t_recv)
            return
        cause = FAIL_CAUSE.get(status)
        if cause is not None:
            if key not in self.book_fail:
                last = self.book_last.get(key, (msg.ts, None))
                self.book_fail[key] = (cause, result.reason, last[0], last[1])
            if channel in INCREMENTAL_BOOK_CHANNELS:
                self.request_resync(key, now_ms, cause)
        elif status is BookStatus.NEED_SNAPSHOT:
            job = self.resyncs.get(key)
            if job is not None:
                job["again"] = True
            else:
                self.request_resync(key, now_ms, "need_snapshot", begin=False)

    def _book_ok(self, key: tuple, book: OrderBook, now_ms: int, t_recv: float) -> None:
        # Runs for every accepted book message (about half of all frames on a busy public
        # connection): the rare branches test an empty dict first.
        depth = self.depth_stored
        ts, seq, bids, asks = book.view(depth)
        self.book_last[key] = (ts, seq)
        sid = "" if seq is None else str(seq)
        self.marks[key] = (ts, sid, now_ms)
        if key not in self.first or (self.lost and key in self.lost):
            self._reopen(key, ts, sid, 1, now_ms)
        if self.book_fail:
            fail = self.book_fail.pop(key, None)
            if fail is not None:
                cause, reason, fts, fseq = fail
                self.gaps.append(Gap(key[0], key[1], fts, ts, cause,
                                     start_id="" if fseq is None else str(fseq), end_id=sid,
                                     reason=reason or cause))
        if self.resyncs:
            job = self.resyncs.get(key)
            if job is not None and not job["fetching"]:
                # A WS snapshot repaired the book before the REST fetch was due.
                del self.resyncs[key]
        payload = {"instId": key[1], "channel": key[0], "ts": str(ts), "seqId": seq,
                   "asks": asks, "bids": bids, "depth": depth, "full": False}
        self.sink("books", key[0], key[1], ts, sid, payload, t_recv)
        self.records_out += 1
        if self.full_every_ms and now_ms - self.last_full.get(key, -1 << 62) >= self.full_every_ms:
            self.last_full[key] = now_ms
            bids, asks = book.top(None)
            full = {"instId": key[1], "channel": key[0], "ts": str(ts), "seqId": seq,
                    "asks": asks, "bids": bids, "depth": max(len(bids), len(asks)), "full": True}
            self.sink("books", key[0], key[1], ts, sid, full, t_recv)
            self.records_out += 1

    def request_resync(self, key: tuple, now_ms: int, cause: str, begin: bool = True) -> None:
        """Resync one book from REST: at most one in flight per book, and not more often than
        resync_min_interval_ms."""
        book = self.books.get(key)
        if book is None or key in self.resyncs:
            return
        if begin:
            book.begin_bootstrap()
        due = max(now_ms, self.last_resync.get(key, -1 << 62) + self.resync_min_interval_ms)
        self.resyncs[key] = {"due": due, "attempts": 0, "fetching": False, "again": False,
                             "cause": cause}
        self.resync_count[cause] += 1

    def due_resyncs(self, now_ms: int) -> list[tuple[tuple, int, int]]:
        """Books whose REST snapshot should be fetched now: [(key, epoch, sz)]; marks them fetching."""
        out = []
        for key, job in self.resyncs.items():
            if not job["fetching"] and job["due"] <= now_ms:
                job["fetching"] = True
                job["again"] = False
                job["attempts"] += 1
                out.append((key, self.books[key].epoch, REST_DEPTH.get(key[0], 400)))
        return out

    def next_resync_due(self) -> int | None:
        dues = [j["due"] for j in self.resyncs.values() if not j["fetching"]]
        return min(dues) if dues else None

    def offer_snapshot(self, key: tuple, snap: dict | None, epoch: int, now_ms: int,
                       t_recv: float = 0.0) -> str:
        """Hand a REST snapshot ({asks, bids, seqId, ts}) or None (fetch failed) to the book.
        Returns "done", "again" (fetch another) or "fallback" (resubscribe the arg instead)."""
        job = self.resyncs.get(key)
        book = self.books.get(key)
        if job is None or book is None:
            return "done"
        job["fetching"] = False
        if book.valid and not book.bootstrapping:
            del self.resyncs[key]
            return "done"  # a WS snapshot got there first
        status = None
        if snap is not None:
            try:
                result = book.offer_snapshot(snap["asks"], snap["bids"], int(snap["seqId"]),
                                             int(snap["ts"]), epoch=epoch)
            except (ValueError, TypeError, KeyError) as exc:
                # A hostile REST reply: count it, keep bootstrapping, fetch again (or fall back).
                log.error("REST snapshot for %s %s unusable: %s", key[0], key[1], exc)
                self.book_status["rest_unusable"] += 1
                book.begin_bootstrap()   # it may have been half replaced
                snap = None
        if snap is not None:
            status = result.status
            self.book_status["rest_" + status.value] += 1
            if result.ok:
                del self.resyncs[key]
                self.last_resync[key] = now_ms
                self._book_ok(key, book, now_ms, t_recv)
                return "done"
            if status in FAIL_CAUSE:
                book.begin_bootstrap()
        if job["attempts"] >= RESYNC_ATTEMPTS:
            del self.resyncs[key]
            self.last_resync[key] = now_ms
            if not book.bootstrapping:
                book.begin_bootstrap()
            self.resubscribe.append(key)
            return "fallback"
        job["due"] = now_ms + (0 if status is BookStatus.NEED_SNAPSHOT else 200 * job["attempts"])
        return "again"

    # ----- connections ---------------------------------------------------------------------------

    def replacing(self, old: Any, new: Any) -> None:
        self.successor[old] = new

    def conn_closed(self, conn: Any, now_ms: int, replaced_by: Any = None,
                    keys: tuple = ()) -> None:
        """`conn` is gone. Its subscriptions move to the replacement, or become reconnect gaps."""
        self.successor.pop(conn, None)
        owned = [k for k, c in self.owner.items() if c is conn]
        for key in owned:
            if replaced_by is not None:
                self.owner[key] = replaced_by
            else:
                del self.owner[key]
        if replaced_by is not None:
            return
        for key in set(owned) | {(k[0], k[1] or k[2] or "") for k in keys}:
            self.mark_lost(key, "reconnect", now_ms)

    def mark_lost(self, key: tuple, cause: str, now_ms: int) -> None:
        if key in self.lost:
            return
        mark = self.marks.get(key)
        if mark is None:
            if key not in self.first:
                return  # never seen in this run: the startup check covers it
            self.lost[key] = (cause, 0, "", now_ms)
        else:
            self.lost[key] = (cause, mark[0], mark[1], now_ms)

    def subscribed(self, keys: tuple, now_ms: int) -> None:
        """Private subscriptions are acked again: their quiet streams are live from now on."""
        for k in keys:
            key = (k[0], k[1] or k[2] or "")
            if key[0] in PRIVATE_CHANNELS and key in self.lost:
                cause, last_ts, last_id, since_ms = self.lost.pop(key)
                self.gaps.append(Gap(key[0], key[1], last_ts or since_ms, now_ms, cause,
                                     start_id=last_id,
                                     reason=f"{cause}: {key[0]} not subscribed in this window"))

    def close_open(self, now_ms: int) -> None:
        """At shutdown: windows still open end now (what follows is the next run's startup gap)."""
        for key in list(self.lost):
            cause, last_ts, last_id, since_ms = self.lost.pop(key)
            self.gaps.append(Gap(key[0], key[1], last_ts or since_ms, now_ms, cause,
                                 start_id=last_id, reason=f"{cause}: still open at shutdown"))


def startup_gaps(old_marks: dict[tuple, dict], first: dict[tuple, tuple]) -> list[Gap]:
    """Gaps between the previous run's watermarks and this run's first records."""
    gaps = []
    for key, (ts, rid, count) in first.items():
        old = old_marks.get(key)
        if not old or not old.get("ts"):
            continue
        old_ts, old_id = int(old["ts"]), old.get("id", "")
        if ts <= old_ts:
            continue
        end_id = rid
        if key[0] in ("trades", "trades-all") and old_id and rid:
            first_covered = int(rid) - count + 1
            if first_covered <= int(old_id) + 1:
                continue
            end_id = str(first_covered)
        gaps.append(Gap(key[0], key[1], old_ts, ts, "startup", start_id=old_id, end_id=end_id,
                        reason="no data between the previous run's watermark and this run"))
    return gaps
