"""What one `OrderBook.apply` / `offer_snapshot` did (`BookResult`), and `BookInvalid`, raised
when an invalid book is read. Pure values: the feeder's pipeline and replay count and log them."""
from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple

__all__ = ["OK_STATUSES", "BookInvalid", "BookResult", "BookStatus"]


class BookStatus(StrEnum):
    """What one `OrderBook.apply` / `offer_snapshot` did. The value is a short, log-friendly str."""

    SNAPSHOT = "snapshot"                    # book replaced: WS snapshot, books5/bbo push, REST snapshot
    APPLIED = "applied"                      # update applied, chain continues
    HEARTBEAT = "heartbeat"                  # empty update with seqId == prevSeqId == last
    RESET = "reset"                          # seqId < prevSeqId == last (after maintenance); accepted
    STALE = "stale"                          # after a REST snapshot: update already contained in it; skipped
    GAP = "gap"                              # prevSeqId != last seqId (or update before any snapshot): invalid
    CHECKSUM_MISMATCH = "checksum_mismatch"  # non-zero checksum differs from the local book: invalid
    CROSSED = "crossed"                      # best bid >= best ask and allow_crossed is False: invalid
    DROPPED_INVALID = "dropped_invalid"      # update ignored: book invalid, waiting for a snapshot
    BUFFERED = "buffered"                    # bootstrapping: update kept for the REST snapshot
    BUFFER_OVERFLOW = "buffer_overflow"      # bootstrapping buffer full: restarted with this update
    BAD_LEVEL = "bad_level"                  # a price or size is not a number: invalid
    NEED_SNAPSHOT = "need_snapshot"          # REST snapshot unusable (too old / hole): fetch another


# Statuses after which the book is valid and readable.
OK_STATUSES = frozenset({BookStatus.SNAPSHOT, BookStatus.APPLIED, BookStatus.HEARTBEAT,
                         BookStatus.RESET, BookStatus.STALE})


class BookResult(NamedTuple):
    status: BookStatus
    checksum_verified: bool = False  # a non-zero checksum was present and matched
    reason: str | None = None        # why the book is invalid / why a snapshot is needed

    @property
    def ok(self) -> bool:
        """True when the message was accepted (or harmlessly skipped) and the book is valid."""
        return self.status in OK_STATUSES


class BookInvalid(RuntimeError):
    """Raised when reading a book that is not valid (no snapshot yet, gap, mismatch, ...)."""
