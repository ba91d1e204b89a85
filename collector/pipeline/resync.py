"""Resync scheduling: which books to fetch from REST, when, and what to do with the reply. Pure:
times are passed in; the driver's REST thread does the fetching.

A broken incremental book (or one that needs a snapshot it never got) gets one job: due at once,
but not sooner than `min_interval_ms` after the book's previous resync; fetched (`due`), then
offered back (`offer`). A reply that does not repair the book is fetched again, up to
RESYNC_ATTEMPTS times; then the book falls back to unsubscribe/subscribe (`resubscribe`). A WS
snapshot that repairs the book first cancels the job (`ws_repaired`).
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from okx.book import BookStatus, OrderBook

Key = tuple[str, str]
RESYNC_ATTEMPTS = 5
REST_DEPTH = {"books": 400, "books-l2-tbt": 400, "books50-l2-tbt": 50}
# Book statuses that invalidate a book, and the gap cause each one records.
FAIL_CAUSE = {
    BookStatus.GAP: "seq_gap",
    BookStatus.CHECKSUM_MISMATCH: "checksum",
    BookStatus.CROSSED: "crossed",
    BookStatus.BAD_LEVEL: "bad_data",
}
# `offer`: the snapshot repaired the book, which the caller now publishes.
REPAIRED = "repaired"
log = logging.getLogger("collector.pipeline")


@dataclass(slots=True)
class ResyncJob:
    due: int  # ms when the fetch should start
    cause: str
    attempts: int = 0
    fetching: bool = False


class Resyncs:
    def __init__(
        self, books: Mapping[Key, OrderBook], book_status: Counter[Any], min_interval_ms: int
    ) -> None:
        self.books = books  # the pipeline's books (read only)
        self.book_status = book_status  # the pipeline's counter: REST outcomes go there too
        self.min_interval_ms = min_interval_ms
        self.jobs: dict[Key, ResyncJob] = {}  # in flight, one per book
        self.last: dict[Key, int] = {}  # ms of each book's last finished resync
        self.count: Counter[str] = Counter()  # jobs started, by cause
        self.resubscribe: deque[Key] = deque()  # books for the resubscribe fallback

    def request(self, key: Key, now_ms: int, cause: str, begin: bool = True) -> None:
        """Resync one book from REST: at most one in flight per book, and not more often than
        min_interval_ms. `begin`: put the book into bootstrapping (it buffers updates)."""
        book = self.books.get(key)
        if book is None or key in self.jobs:
            return
        if begin:
            book.begin_bootstrap()
        due = max(now_ms, self.last.get(key, -1 << 62) + self.min_interval_ms)
        self.jobs[key] = ResyncJob(due, cause)
        self.count[cause] += 1

    def need_snapshot(self, key: Key, now_ms: int) -> None:
        """The book cannot go on without a snapshot: the job in flight brings one, else ask."""
        if key not in self.jobs:
            self.request(key, now_ms, "need_snapshot", begin=False)

    def ws_repaired(self, key: Key) -> None:
        """A WS snapshot repaired the book before the REST fetch was due: the job is moot."""
        job = self.jobs.get(key)
        if job is not None and not job.fetching:
            del self.jobs[key]

    def due(self, now_ms: int) -> list[tuple[Key, int, int]]:
        """Books whose REST snapshot should be fetched now: [(key, epoch, sz)]; marks them
        fetching."""
        out = []
        for key, job in self.jobs.items():
            if not job.fetching and job.due <= now_ms:
                job.fetching = True
                job.attempts += 1
                out.append((key, self.books[key].epoch, REST_DEPTH.get(key[0], 400)))
        return out

    def next_due(self) -> int | None:
        dues = [j.due for j in self.jobs.values() if not j.fetching]
        return min(dues) if dues else None

    def offer(self, key: Key, snap: dict[str, Any] | None, epoch: int, now_ms: int) -> str:
        """Hand a REST snapshot ({asks, bids, seqId, ts}) or None (fetch failed) to the book.
        Returns REPAIRED (the caller publishes the book), "done" (nothing to do), "again"
        (fetch another) or "fallback" (the book is queued on `resubscribe`)."""
        job = self.jobs.get(key)
        book = self.books.get(key)
        if job is None or book is None:
            return "done"
        job.fetching = False
        if book.valid and not book.bootstrapping:
            del self.jobs[key]
            return "done"  # a WS snapshot got there first
        status = None
        if snap is not None:
            try:
                result = book.offer_snapshot(
                    snap["asks"], snap["bids"], int(snap["seqId"]), int(snap["ts"]), epoch=epoch
                )
            except (ValueError, TypeError, KeyError) as exc:
                # A hostile REST reply: count it, keep bootstrapping, fetch again (or fall back).
                log.error("REST snapshot for %s %s unusable: %s", key[0], key[1], exc)
                self.book_status["rest_unusable"] += 1
                book.begin_bootstrap()  # it may have been half replaced
                snap = None
        if snap is not None:
            status = result.status
            self.book_status["rest_" + status.value] += 1
            if result.ok:
                del self.jobs[key]
                self.last[key] = now_ms
                return REPAIRED
            if status in FAIL_CAUSE:
                book.begin_bootstrap()
        if job.attempts >= RESYNC_ATTEMPTS:
            del self.jobs[key]
            self.last[key] = now_ms
            if not book.bootstrapping:
                book.begin_bootstrap()
            self.resubscribe.append(key)
            return "fallback"
        job.due = now_ms + (0 if status is BookStatus.NEED_SNAPSHOT else 200 * job.attempts)
        return "again"
