"""What one `OrderBook.apply` / `offer_snapshot` did (`BookResult`). Pure values: the feeder's
pipeline and replay count and log them. (`BookInvalid`, raised when an invalid book is read, is
in the error tree, okx/errors.py.)"""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple

__all__ = ["OK_STATUSES", "BookResult", "BookStatus"]


class BookStatus(StrEnum):
    """What one `OrderBook.apply` / `offer_snapshot` did. The value is a short, log-friendly str."""

    # book replaced: WS snapshot, books5/bbo push, REST snapshot
    SNAPSHOT = "snapshot"
    # update applied, chain continues
    APPLIED = "applied"
    # empty update with seqId == prevSeqId == last
    HEARTBEAT = "heartbeat"
    # seqId < prevSeqId == last (after maintenance); accepted
    RESET = "reset"
    # after a REST snapshot: update already contained in it; skipped
    STALE = "stale"
    # prevSeqId != last seqId (or update before any snapshot): invalid
    GAP = "gap"
    # non-zero checksum differs from the local book: invalid
    CHECKSUM_MISMATCH = "checksum_mismatch"
    # best bid >= best ask and allow_crossed is False: invalid
    CROSSED = "crossed"
    # update ignored: book invalid, waiting for a snapshot
    DROPPED_INVALID = "dropped_invalid"
    # bootstrapping: update kept for the REST snapshot
    BUFFERED = "buffered"
    # bootstrapping buffer full: restarted with this update
    BUFFER_OVERFLOW = "buffer_overflow"
    # a price or size is not a number: invalid
    BAD_LEVEL = "bad_level"
    # REST snapshot unusable (too old / hole): fetch another
    NEED_SNAPSHOT = "need_snapshot"


# Statuses after which the book is valid and readable.
OK_STATUSES = frozenset(
    {
        BookStatus.SNAPSHOT,
        BookStatus.APPLIED,
        BookStatus.HEARTBEAT,
        BookStatus.RESET,
        BookStatus.STALE,
    }
)


class BookResult(NamedTuple):
    status: BookStatus
    checksum_verified: bool = False  # a non-zero checksum was present and matched
    reason: str | None = None  # why the book is invalid / why a snapshot is needed

    @property
    def ok(self) -> bool:
        """True when the message was accepted (or harmlessly skipped) and the book is valid."""
        return self.status in OK_STATUSES
