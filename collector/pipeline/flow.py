"""The Pipeline: one received frame's way through the feeder, read top to bottom in `feed`.

    feed(conn, raw)   parse (okx.parse) -> which data is used (ownership.py: owner, trade dedupe)
                      -> book state (okx.book) -> watermarks and gap windows (tracking.py)
                      -> sink(kind, channel, instId, ts_ms, id, payload, t_recv), one record each
    a broken book     -> a gap window (tracking.py) and a REST resync job (resync.py)
    due_resyncs, offer_snapshot, next_resync_due    the driver's REST thread (resync.py)
    replacing, conn_closed, mark_lost, subscribed, close_open    connection events

No I/O, no clock: callers pass times in; one thread at a time (the feeder holds a lock around
it). Each helper returns to `feed`, which does the next step: no helper calls back into it.
The hot path (about half of all frames on a busy public connection are book messages) keeps to
local lookups and tests an empty dict before each rare branch.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Hashable
from typing import Any

from collector.pipeline.loglimit import error_category
from collector.pipeline.ownership import (
    Key,
    Ownership,
    TradeDedupe,
    data_key,
    record_mark,
    subscription_key,
)
from collector.pipeline.resync import FAIL_CAUSE, REPAIRED, ResyncJob, Resyncs
from collector.pipeline.tracking import GapTracker
from core.gaps import Gap
from okx.book import OK_STATUSES, BookStatus, OrderBook
from okx.channels import INCREMENTAL_BOOK_CHANNELS, KIND_OF_CHANNEL, PRIVATE_CHANNELS
from okx.parse import parse_frame
from okx.records import (
    Balance,
    BookData,
    Candle,
    Data,
    Event,
    Order,
    ParseError,
    Pong,
    Position,
    Ticker,
    Trade,
    Unknown,
)

Sink = Callable[[str, str, str, int, str, dict[str, Any], float], None]

KIND_OF_RECORD = {
    Trade: "trades",
    Ticker: "tickers",
    Candle: "candles",
    Order: "orders",
    Balance: "balances",
    Position: "positions",
}
BOOK_DEPTH = {"books": 400, "books-l2-tbt": 400, "books50-l2-tbt": 50}


class Pipeline:
    def __init__(
        self,
        sink: Sink,
        *,
        depth_stored: int = 25,
        full_every_ms: int = 60_000,
        resync_min_interval_ms: int = 1_000,
        verify_checksum: bool = True,
    ) -> None:
        self.sink = sink
        self.depth_stored = depth_stored
        self.full_every_ms = full_every_ms
        self.verify_checksum = verify_checksum
        self.books: dict[Key, OrderBook] = {}
        # each book's sampling window (exchange ts // full_every_ms) of its last full-depth record
        self.last_full: dict[Key, int] = {}
        self.ownership = Ownership()
        self.dedupe = TradeDedupe()
        self.tracking = GapTracker()
        # counters (exported by health.py)
        self.frames = 0
        self.by_channel: Counter[str] = Counter()
        self.parse_errors: Counter[str] = Counter()
        self.unknown: Counter[str] = Counter()
        self.book_status: Counter[Any] = Counter()
        self.records_out = 0
        self.resync = Resyncs(self.books, self.book_status, resync_min_interval_ms)
        # The hot path's lookups, bound once (each attribute hop costs on every frame): the
        # owner of each key (read only here: a key already owned by this connection needs no
        # call into Ownership) and the trackers' per-record calls.
        self._owner = self.ownership.owner
        self._admits = self.ownership.admits
        self._seen = self.tracking.seen
        self._book_seen = self.tracking.book_seen
        self._jobs = self.resync.jobs

    # ----- frames --------------------------------------------------------------------------------

    def feed(
        self, conn: Hashable, raw: str | bytes, now_ms: int, t_recv: float = 0.0
    ) -> Data | Event | Pong | ParseError | Unknown:
        """Process one received frame; return the parse result (the caller routes events)."""
        self.frames += 1
        # Any: dispatched on type(result), which mypy cannot narrow (isinstance costs more here)
        result: Any = parse_frame(raw)
        t = type(result)
        if t is Data:
            self._data(conn, result, now_ms, t_recv)
        elif t is ParseError:
            self.parse_errors[error_category(result.reason)] += 1
        elif t is Unknown:
            self.unknown[error_category(result.reason)] += 1
        return result

    def _data(self, conn: Hashable, data: Data, now_ms: int, t_recv: float) -> None:
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
        key = data_key(data)
        is_trade = type(first) is Trade
        if self._owner.get(key) is not conn and not self._admits(
            key, conn, is_trade or channel in PRIVATE_CHANNELS, True
        ):
            return
        sink = self.sink
        seen = self._seen
        if is_trade:
            for rec in self.dedupe.new_trades(key, records):
                seen(key, rec.ts, rec.tradeId, now_ms, rec.count)
                sink("trades", channel, rec.instId, rec.ts, rec.tradeId, rec.to_payload(), t_recv)
                self.records_out += 1
            return
        kind = KIND_OF_CHANNEL[channel]
        for rec in records:
            ts, rid = record_mark(rec)
            seen(key, ts, rid, now_ms)
            rkind = KIND_OF_RECORD.get(type(rec), kind)
            sink(rkind, channel, key[1], ts, rid, rec.to_payload(), t_recv)
            self.records_out += 1

    def _book(self, conn: Hashable, msg: BookData, now_ms: int, t_recv: float) -> None:
        channel = msg.channel
        key = (channel, msg.instId)
        if self._owner.get(key) is not conn and not self._admits(
            key, conn, False, msg.action != "update"
        ):
            return  # a replacement's snapshot takes the book over; its updates wait for it
        book = self.books.get(key)
        if book is None:
            book = self.books[key] = OrderBook(
                channel, msg.instId, BOOK_DEPTH.get(channel), verify_checksum=self.verify_checksum
            )
        result = book.apply(msg)
        status = result.status
        counts = self.book_status
        counts[status] = counts.get(status, 0) + 1
        if status in OK_STATUSES:
            if status is not BookStatus.STALE:
                self._publish_book(key, book, now_ms, t_recv)
            return
        cause = FAIL_CAUSE.get(status)
        if cause is not None:
            self.tracking.book_failed(key, cause, result.reason, msg.ts)
            if channel in INCREMENTAL_BOOK_CHANNELS:
                self.resync.request(key, now_ms, cause)
        elif status is BookStatus.NEED_SNAPSHOT:
            self.resync.need_snapshot(key, now_ms)

    def _publish_book(self, key: Key, book: OrderBook, now_ms: int, t_recv: float) -> None:
        """A valid book state: its watermark, the close of any window, its records."""
        depth = self.depth_stored
        ts, seq, bids, asks = book.view(depth)
        assert ts is not None, "a valid book has its ts (view() raises otherwise)"
        sid = "" if seq is None else str(seq)
        self._book_seen(key, ts, seq, sid, now_ms)
        if self._jobs:
            self.resync.ws_repaired(key)
        payload = {
            "instId": key[1],
            "channel": key[0],
            "ts": str(ts),
            "seqId": seq,
            "asks": asks,
            "bids": bids,
            "depth": depth,
            "full": False,
        }
        self.sink("books", key[0], key[1], ts, sid, payload, t_recv)
        self.records_out += 1
        # One full-depth record per sampling window of the EXCHANGE time: the redundant feeders
        # of a shard pick the same update (the window's first) and so the same _id
        # (full:<ts>), stored once; either one alone still fills every window. After a
        # (re)start a feeder adds one for its first update (an extra document, never a hole).
        window = ts // self.full_every_ms if self.full_every_ms else 0
        if self.full_every_ms and self.last_full.get(key) != window:
            self.last_full[key] = window
            bids, asks = book.top(None)
            full = {
                "instId": key[1],
                "channel": key[0],
                "ts": str(ts),
                "seqId": seq,
                "asks": asks,
                "bids": bids,
                "depth": max(len(bids), len(asks)),
                "full": True,
            }
            self.sink("books", key[0], key[1], ts, sid, full, t_recv)
            self.records_out += 1

    # ----- REST resyncs (the driver's REST thread) ---------------------------------------------

    def request_resync(self, key: Key, now_ms: int, cause: str, begin: bool = True) -> None:
        self.resync.request(key, now_ms, cause, begin)

    def due_resyncs(self, now_ms: int) -> list[tuple[Key, int, int]]:
        """Books whose REST snapshot should be fetched now: [(key, epoch, sz)]; marks them
        fetching."""
        return self.resync.due(now_ms)

    def next_resync_due(self) -> int | None:
        return self.resync.next_due()

    def offer_snapshot(
        self, key: Key, snap: dict[str, Any] | None, epoch: int, now_ms: int, t_recv: float = 0.0
    ) -> str:
        """Hand a REST snapshot ({asks, bids, seqId, ts}) or None (fetch failed) to the book.
        Returns "done", "again" (fetch another) or "fallback" (resubscribe the arg instead)."""
        outcome = self.resync.offer(key, snap, epoch, now_ms)
        if outcome == REPAIRED:
            self._publish_book(key, self.books[key], now_ms, t_recv)
            return "done"
        return outcome

    # ----- connections ---------------------------------------------------------------------------

    def replacing(self, old: Hashable, new: Hashable) -> None:
        self.ownership.replacing(old, new)

    def conn_closed(
        self,
        conn: Hashable,
        now_ms: int,
        replaced_by: Hashable | None = None,
        keys: tuple[tuple[Any, ...], ...] = (),
    ) -> None:
        """`conn` is gone. Its subscriptions move to the replacement, or become reconnect gaps.
        `keys`: its subscriptions' (channel, instId, instType, ...) tuples."""
        owned = self.ownership.conn_closed(conn, replaced_by)
        if replaced_by is not None:
            return
        for key in set(owned) | {subscription_key(k) for k in keys}:
            self.tracking.mark_lost(key, "reconnect", now_ms)

    def mark_lost(self, key: Key, cause: str, now_ms: int) -> None:
        self.tracking.mark_lost(key, cause, now_ms)

    def subscribed(self, keys: tuple[tuple[Any, ...], ...], now_ms: int) -> None:
        """Private subscriptions are acked again: their quiet streams are live from now on."""
        self.tracking.subscribed([subscription_key(k) for k in keys], now_ms)

    def close_open(self, now_ms: int) -> None:
        """At shutdown: windows still open end now (what follows is the next run's startup gap)."""
        self.tracking.close_open(now_ms)

    # ----- state the driver, health, bench and tests read ----------------------------------------

    @property
    def gaps(self) -> deque[Gap]:
        return self.tracking.gaps

    @property
    def marks(self) -> dict[Key, tuple[int, str, int]]:
        return self.tracking.marks

    @property
    def first(self) -> dict[Key, tuple[int, str, int]]:
        return self.tracking.first

    @property
    def lost(self) -> dict[Key, tuple[str, int, str, int]]:
        return self.tracking.lost

    @property
    def book_last(self) -> dict[Key, tuple[int, int | None]]:
        return self.tracking.book_last

    @property
    def book_fail(self) -> dict[Key, tuple[str, str | None, int, int | None]]:
        return self.tracking.book_fail

    @property
    def resyncs(self) -> dict[Key, ResyncJob]:
        return self.resync.jobs

    @property
    def resync_count(self) -> Counter[str]:
        return self.resync.count

    @property
    def resubscribe(self) -> deque[Key]:
        return self.resync.resubscribe

    @property
    def duplicates(self) -> int:
        return self.dedupe.duplicates

    @property
    def overlap_dropped(self) -> int:
        return self.ownership.overlap_dropped
