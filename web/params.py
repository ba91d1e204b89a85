"""Query parameters of the read API: parsed here, rejected here with a clear 4xx, never a 500.

Times are milliseconds since the epoch or ISO-8601 ("2026-01-02T03:04:05Z"; no offset = UTC).
Ranges are half-open, [start, end): paging a range and then the next one never repeats a record.
Every rejection is an `ApiError` with one line saying what was wrong with which parameter; app.py
turns it into `{"error": ...}` with its status and counts it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from okx.channels import CANDLE_BARS

# OKX's bar spellings: one list, the exchange library's (the candle<bar> channels, /market/candles)
BARS = CANDLE_BARS
CANDLE_SOURCES = ("okx", "trades")
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_BOOK_DEPTH = 5  # books5:<instId> holds the top 5 levels (tasks/documents.py TOP_LEVELS)
# A BSON datetime holds milliseconds in an int64; Python's datetime stops at year 9999.
MAX_MS = 253_402_300_799_999

INST_ID_PATTERN = re.compile(r"^[A-Z0-9]{1,20}(-[A-Z0-9]{1,20}){1,4}$")


class ApiError(Exception):
    """A request the API refuses: `status` (4xx) and a one-line `message` for the caller."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class TimeRange:
    start_ms: int  # inclusive
    end_ms: int  # exclusive


def parse_time(name: str, raw: str) -> int:
    """`raw` (ms digits or ISO-8601) as ms since the epoch."""
    text = raw.strip()
    if text.isascii() and text.isdigit():
        ms = int(text)
    else:
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            raise ApiError(
                400, f"{name}: {raw[:40]!r} is neither milliseconds nor an ISO-8601 time"
            ) from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        ms = int(when.timestamp() * 1000)
    if not 0 <= ms <= MAX_MS:
        raise ApiError(400, f"{name}: {raw[:40]!r} is outside the years 1970 to 9999")
    return ms


def time_range(start: str | None, end: str | None) -> TimeRange:
    """[start, end): missing bounds are the beginning of time and its end."""
    start_ms = parse_time("start", start) if start else 0
    end_ms = parse_time("end", end) if end else MAX_MS + 1
    if start_ms > end_ms:
        raise ApiError(400, f"start ({start_ms}) is after end ({end_ms}): the range is inverted")
    return TimeRange(start_ms, end_ms)


def limit(raw: int | None, default: int = DEFAULT_LIMIT, maximum: int = MAX_LIMIT) -> int:
    if raw is None:
        return default
    if not 1 <= raw <= maximum:
        raise ApiError(400, f"limit must be between 1 and {maximum}, got {raw}")
    return raw


def bar(raw: str | None, default: str | None = "1m") -> str:
    value = raw if raw else default
    if value not in BARS:
        raise ApiError(400, f"bar {raw!r} is not an OKX bar; one of {', '.join(BARS)}")
    return value


def candle_source(raw: str | None) -> str:
    value = raw or "okx"
    if value not in CANDLE_SOURCES:
        raise ApiError(400, f"source {raw!r} must be one of {', '.join(CANDLE_SOURCES)}")
    return value


def depth(raw: int | None) -> int:
    if raw is None:
        return MAX_BOOK_DEPTH
    if not 1 <= raw <= MAX_BOOK_DEPTH:
        raise ApiError(
            400,
            f"depth must be between 1 and {MAX_BOOK_DEPTH} (the current state keeps the top "
            f"{MAX_BOOK_DEPTH} levels; deeper snapshots are in /api/v1/books/{{instId}})",
        )
    return raw


def inst_id_shape(raw: str) -> str:
    """An instId as OKX spells them (BTC-USDT, BTC-USDT-SWAP, BTC-USD-261225-100000-C)."""
    if not INST_ID_PATTERN.match(raw):
        raise ApiError(400, f"instId {raw[:40]!r} is not an OKX instrument id (like BTC-USDT)")
    return raw


def one_of(name: str, raw: str | None, allowed: tuple[str, ...]) -> str | None:
    if raw is None or raw == "":
        return None
    if raw not in allowed:
        raise ApiError(400, f"{name} {raw[:40]!r} must be one of {', '.join(allowed)}")
    return raw
