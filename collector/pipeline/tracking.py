"""Gap tracking: what the feeder has seen of each (channel, instId) stream, and the gaps that
follow from it. Pure: times are passed in.

    marks      key -> (ts, id, seen_ms)           watermark: the last record published
    first      key -> (ts, id, count)             first record of this run (the startup gap)
    lost       key -> (cause, ts, id, since_ms)   open window: no data since the stream was lost
    book_last  key -> (ts, seqId)                 the book's last valid state
    book_fail  key -> (cause, reason, ts, seqId)  the book broke after that state
    gaps       deque of Gap, for the ledger (the driver drains it)

A window opens when a connection is lost or goes stale (`mark_lost`) or a book breaks
(`book_failed`), and closes with the stream's next record (`seen`, `book_seen`), when a private
subscription is acked again (`subscribed`), or at shutdown (`close_open`).
"""

from __future__ import annotations

from collections import deque

from core.gaps import Gap
from okx.channels import PRIVATE_CHANNELS

Key = tuple[str, str]
TRADE_CHANNELS = ("trades", "trades-all")


class GapTracker:
    def __init__(self) -> None:
        self.marks: dict[Key, tuple[int, str, int]] = {}
        self.first: dict[Key, tuple[int, str, int]] = {}
        self.lost: dict[Key, tuple[str, int, str, int]] = {}
        self.book_last: dict[Key, tuple[int, int | None]] = {}
        self.book_fail: dict[Key, tuple[str, str | None, int, int | None]] = {}
        self.gaps: deque[Gap] = deque()

    # ----- records (the hot path: the common case is two dict operations) ----------------------

    def seen(self, key: Key, ts: int, rid: str, now_ms: int, count: str = "1") -> None:
        """A record of `key` is published: the watermark moves, and the first record of the run
        or after a loss is noted (closing the open window). `count`: how many trades an
        aggregated trade stands for (OKX's string), so the window's id bound is exact."""
        if key not in self.first or (self.lost and key in self.lost):
            self._reopen(key, ts, rid, int(count or 1))
        self.marks[key] = (ts, rid, now_ms)

    def book_seen(self, key: Key, ts: int, seq: int | None, sid: str, now_ms: int) -> None:
        """A book state is published: as `seen`, plus the close of a book failure's window."""
        self.book_last[key] = (ts, seq)
        self.marks[key] = (ts, sid, now_ms)
        if key not in self.first or (self.lost and key in self.lost):
            self._reopen(key, ts, sid, 1)
        if self.book_fail:
            fail = self.book_fail.pop(key, None)
            if fail is not None:
                cause, reason, fts, fseq = fail
                self.gaps.append(
                    Gap(
                        key[0],
                        key[1],
                        fts,
                        ts,
                        cause,
                        start_id="" if fseq is None else str(fseq),
                        end_id=sid,
                        reason=reason or cause,
                    )
                )

    def book_failed(self, key: Key, cause: str, reason: str | None, ts: int) -> None:
        """The book of `key` broke (seq gap, checksum, ...): a window opens at its last valid
        state (or at `ts` if it never had one); further failures before the repair add nothing."""
        if key not in self.book_fail:
            last_ts, last_seq = self.book_last.get(key, (ts, None))
            self.book_fail[key] = (cause, reason, last_ts, last_seq)

    def _reopen(self, key: Key, ts: int, rid: str, count: int) -> None:
        if key not in self.first:
            self.first[key] = (ts, rid, count)
        lost = self.lost.pop(key, None)
        if lost is None:
            return
        cause, last_ts, last_id, since_ms = lost
        end_id = rid
        if key[0] in TRADE_CHANNELS and last_id and rid:
            first_covered = int(rid) - count + 1
            if first_covered == int(last_id) + 1:
                return  # contiguous: nothing was missed
            end_id = str(first_covered)
        self.gaps.append(
            Gap(
                key[0],
                key[1],
                last_ts or since_ms,
                ts,
                cause,
                start_id=last_id,
                end_id=end_id,
                reason=f"{cause}: no data from {key[0]} {key[1]} between these bounds",
            )
        )

    # ----- connections -------------------------------------------------------------------------

    def mark_lost(self, key: Key, cause: str, now_ms: int) -> None:
        """No data for `key` from now on (until its next record): open a window at its mark."""
        if key in self.lost:
            return
        mark = self.marks.get(key)
        if mark is None:
            if key not in self.first:
                return  # never seen in this run: the startup check covers it
            self.lost[key] = (cause, 0, "", now_ms)
        else:
            self.lost[key] = (cause, mark[0], mark[1], now_ms)

    def subscribed(self, keys: list[Key], now_ms: int) -> None:
        """Private subscriptions are acked again: their quiet streams are live from now on."""
        for key in keys:
            if key[0] in PRIVATE_CHANNELS and key in self.lost:
                cause, last_ts, last_id, since_ms = self.lost.pop(key)
                self.gaps.append(
                    Gap(
                        key[0],
                        key[1],
                        last_ts or since_ms,
                        now_ms,
                        cause,
                        start_id=last_id,
                        reason=f"{cause}: {key[0]} not subscribed in this window",
                    )
                )

    def close_open(self, now_ms: int) -> None:
        """At shutdown: windows still open end now (what follows is the next run's startup gap)."""
        for key in list(self.lost):
            cause, last_ts, last_id, since_ms = self.lost.pop(key)
            self.gaps.append(
                Gap(
                    key[0],
                    key[1],
                    last_ts or since_ms,
                    now_ms,
                    cause,
                    start_id=last_id,
                    reason=f"{cause}: still open at shutdown",
                )
            )


def startup_gaps(
    old_marks: dict[Key, dict[str, str]], first: dict[Key, tuple[int, str, int]]
) -> list[Gap]:
    """Gaps between the previous run's watermarks (their Redis hashes) and this run's first
    records."""
    gaps = []
    for key, (ts, rid, count) in first.items():
        old = old_marks.get(key)
        if not old or not old.get("ts"):
            continue
        old_ts, old_id = int(old["ts"]), old.get("id", "")
        if ts <= old_ts:
            continue
        end_id = rid
        if key[0] in TRADE_CHANNELS and old_id and rid:
            first_covered = int(rid) - count + 1
            if first_covered <= int(old_id) + 1:
                continue
            end_id = str(first_covered)
        gaps.append(
            Gap(
                key[0],
                key[1],
                old_ts,
                ts,
                "startup",
                start_id=old_id,
                end_id=end_id,
                reason="no data between the previous run's watermark and this run",
            )
        )
    return gaps
