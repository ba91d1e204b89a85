"""Replay a recording through the parser and the books, and count what happened. Pure core plus a
thin file reader.

A recording has one received frame per line, either exactly as received, or as a JSON object
{"ts": receive time, "frame": "<raw text>"} (what `--record` writes). Blank lines are skipped.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO

import orjson

from okx.book import BookStatus, OrderBook
from okx.channels import BOOK_CHANNELS
from okx.parse import parse_frame
from okx.records import BookData, Data, Event, ParseError, Pong, Unknown

_WRAPPER_KEYS = {"ts", "frame", "endpoint"}


def unwrap(line: bytes) -> tuple[float | None, bytes | str]:
    """One recording line -> (receive time or None, the frame as received)."""
    if line.startswith(b'{"ts"') or line.startswith(b'{"frame"'):
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            return None, line
        if (
            isinstance(obj, dict)
            and isinstance(obj.get("frame"), str)
            and set(obj) <= _WRAPPER_KEYS
        ):
            ts = obj.get("ts")
            return (float(ts) if isinstance(ts, (int, float)) else None), obj["frame"]
    return None, line


def read_lines(fh: IO[bytes]) -> Iterator[bytes]:
    for line in fh:
        line = line.rstrip(b"\r\n")
        if line.strip():
            yield line


@dataclass
class Replay:
    """Feed frames in order; read the counters with `summary()`."""

    frames: int = 0
    parse_errors: int = 0
    unknown: int = 0
    pongs: int = 0
    by_channel: Counter = field(default_factory=Counter)
    events: Counter = field(default_factory=Counter)
    book_status: Counter = field(default_factory=Counter)
    checksum_ok: int = 0
    error_reasons: Counter = field(default_factory=Counter)
    books: dict[tuple[str, str], OrderBook] = field(default_factory=dict)

    def feed(self, raw: bytes | str) -> None:
        self.frames += 1
        result = parse_frame(raw)
        if isinstance(result, Data):
            self.by_channel[result.channel] += 1
            if result.channel in BOOK_CHANNELS:
                for record in result.records:
                    self._book(record)
        elif isinstance(result, Event):
            self.events[result.event] += 1
        elif isinstance(result, Pong):
            self.pongs += 1
        elif isinstance(result, ParseError):
            self.parse_errors += 1
            self.error_reasons[result.reason.split(":")[0]] += 1
        elif isinstance(result, Unknown):
            self.unknown += 1
            self.error_reasons[result.reason] += 1

    def _book(self, msg: BookData) -> None:
        key = (msg.channel, msg.instId)
        book = self.books.get(key)
        if book is None:
            book = self.books[key] = OrderBook(msg.channel, msg.instId)
        result = book.apply(msg)
        self.book_status[result.status] += 1
        if result.checksum_verified:
            self.checksum_ok += 1

    def summary(self) -> dict:
        mismatch = self.book_status[BookStatus.CHECKSUM_MISMATCH]
        return {
            "frames": self.frames,
            "parse_errors": self.parse_errors,
            "unknown": self.unknown,
            "pongs": self.pongs,
            "by_channel": dict(sorted(self.by_channel.items())),
            "events": dict(sorted(self.events.items())),
            "books": len(self.books),
            "books_checked": self.checksum_ok + mismatch,
            "checksum_ok": self.checksum_ok,
            "checksum_mismatch": mismatch,
            "seq_gaps": self.book_status[BookStatus.GAP],
            "crossed": self.book_status[BookStatus.CROSSED],
            "heartbeats": self.book_status[BookStatus.HEARTBEAT],
            "seq_resets": self.book_status[BookStatus.RESET],
            "dropped_invalid": self.book_status[BookStatus.DROPPED_INVALID],
            "error_reasons": dict(self.error_reasons.most_common(10)),
        }


def replay_file(path: str) -> dict:
    """Replay a whole file. Raises OSError when it cannot be read."""
    replay = Replay()
    with open(path, "rb") as fh:
        for line in read_lines(fh):
            replay.feed(unwrap(line)[1])
    return replay.summary()


def format_summary(path: str, s: dict) -> str:
    lines = [
        f"replayed {s['frames']} frames from {path}",
        f"  parse errors: {s['parse_errors']}   unknown: {s['unknown']}   pongs: {s['pongs']}",
    ]
    if s["by_channel"]:
        lines.append(
            "  data frames by channel: " + ", ".join(f"{k} {v}" for k, v in s["by_channel"].items())
        )
    if s["events"]:
        lines.append("  events: " + ", ".join(f"{k} {v}" for k, v in s["events"].items()))
    lines.append(
        f"  books: {s['books']}   checksums verified: {s['books_checked']} "
        f"(ok {s['checksum_ok']}, mismatch {s['checksum_mismatch']})"
    )
    lines.append(
        f"  seq gaps: {s['seq_gaps']}   crossed: {s['crossed']}   heartbeats: "
        f"{s['heartbeats']}   seq resets: {s['seq_resets']}   dropped while invalid: "
        f"{s['dropped_invalid']}"
    )
    for reason, count in s["error_reasons"].items():
        lines.append(f"  {count} x {reason}")
    return "\n".join(lines)
