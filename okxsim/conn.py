"""One WebSocket client connection, written to with pre-built frames (serialize once, send many)."""

from __future__ import annotations

import struct
import time
from typing import Any

import orjson

OP_TEXT, OP_BINARY = 0x1, 0x2
MAX_BUFFER = 32 * 1024 * 1024  # past this the client is too slow: close 4005 as OKX does


def ws_frame(payload: bytes, opcode: int = OP_TEXT) -> bytes:
    """A complete unmasked server frame; identical bytes for every subscriber."""
    n = len(payload)
    b0 = 0x80 | opcode
    if n < 126:
        return struct.pack("!BB", b0, n) + payload
    if n < 65536:
        return struct.pack("!BBH", b0, 126, n) + payload
    return struct.pack("!BBQ", b0, 127, n) + payload


class Conn:
    """State of one socket: endpoint, login, subscriptions, liveness and fault flags."""

    __slots__ = (
        "ws",
        "transport",
        "conn_id",
        "endpoint",
        "logged_in",
        "subs",
        "private_args",
        "last_sent",
        "last_recv",
        "unsubscribed_since",
        "stalled_until",
        "sent",
        "closed",
        "stats",
    )

    def __init__(self, ws: Any, transport: Any, conn_id: str, endpoint: str, stats: Any) -> None:
        self.ws = ws
        self.transport = transport
        self.conn_id = conn_id
        self.endpoint = endpoint  # "public" | "business" | "private"
        self.logged_in = False
        self.subs: set[tuple] = set()  # market keys (channel, instId)
        self.private_args: dict[str, dict] = {}  # channel -> arg
        now = time.monotonic()
        self.last_sent = now
        self.last_recv = now
        self.unsubscribed_since: float | None = now
        self.stalled_until = 0.0
        self.sent = 0
        self.closed = False
        self.stats = stats

    def stalled(self) -> bool:
        return self.stalled_until > time.monotonic()

    def push(self, frame: bytes, channel: str = "") -> None:
        """Write a pre-built frame now (no await). Skipped while stalled or closing."""
        self.push_many([(frame, channel)])

    def push_many(self, frames: list[tuple[bytes, str]]) -> None:
        """Write several pre-built (frame, channel) at once: one socket write for all of them.
        Skipped while stalled or closing."""
        t = self.transport
        if self.closed or t is None or t.is_closing() or self.stalled_until > time.monotonic():
            return
        if t.get_write_buffer_size() > MAX_BUFFER:
            # a client too slow to keep its buffer under MAX_BUFFER is closed with 4005, as OKX does
            self.closed = True
            t.write(ws_frame(struct.pack("!H", 4005) + b"Buffer is full", 0x8))
            t.abort()
            return
        t.write(b"".join(f for f, _ in frames) if len(frames) > 1 else frames[0][0])
        self.last_sent = time.monotonic()
        self.sent += len(frames)
        count = self.stats.count
        for _, channel in frames:
            count(channel)

    def send_obj(self, obj: Any, channel: str = "event") -> None:
        self.push(ws_frame(orjson.dumps(obj)), channel)

    def send_text(self, text: str, channel: str = "pong") -> None:
        self.push(ws_frame(text.encode()), channel)

    def abort(self) -> None:
        """Drop the TCP connection with no close frame."""
        self.closed = True
        if self.transport is not None:
            self.transport.abort()
