"""Buffered reader of server WebSocket frames (RFC 6455), for the feeder's receive path.

websocket-client stays in charge of connecting (handshake, TLS), sending and closing. Its receive
path makes two or three `recv` system calls and builds several Python objects per frame (header,
length and payload read separately, then an ABNF object, a lock, validation): on this machine that
is about 8 us per small frame, a third of the feeder's budget at 40,000 frames/s. This reader
pulls whatever the socket holds with one `recv` of up to `chunk` bytes and cuts every complete
frame out of it, so a busy socket costs one system call per many frames and about 1 us per frame.

Only what a client receives is handled: unmasked server frames; text, binary, continuation
(fragments are joined), ping, pong and close. Anything else (reserved bits without a negotiated
extension, masked server frames, unknown opcodes, control frames over 125 bytes or fragmented)
raises `ProtocolError`, and the caller drops the connection.

websocket-client reads the handshake response byte by byte, so nothing of the frame stream is
left in its buffers when this reader takes over the socket.
"""

from __future__ import annotations

from typing import Protocol

from okx.errors import ProtocolError  # noqa: F401 - raised here; importable from here too

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

MAX_MESSAGE = 16 << 20  # a frame or reassembled message larger than this is a protocol error

Message = tuple[int, bytes]  # (opcode, payload): one complete message


class Receiver(Protocol):
    """What the reader needs of a socket (socket.socket, websocket-client's `ws.sock`)."""

    def recv(self, bufsize: int, /) -> bytes: ...


class FrameReader:
    """Cuts complete frames out of a socket's byte stream.

    `read()` performs one `recv` (which may raise the socket's timeout or a connection error) and
    returns the complete messages it made available as (opcode, payload bytes), in order; an
    empty list when only part of a frame arrived. A connection closed by the peer without a close
    frame raises ConnectionError.
    """

    __slots__ = ("sock", "chunk", "_buf", "_need", "_parts", "_frag_op", "_frag_len", "_parts_msg")

    def __init__(self, sock: Receiver, chunk: int = 1 << 16) -> None:
        self.sock = sock
        self.chunk = chunk
        self._buf = b""  # bytes received but not yet cut into frames
        self._need = 0  # bytes the next frame needs in total (0: unknown yet)
        self._parts: list[bytes] = []  # chunks accumulated while waiting for a large frame
        self._frag_op: int | None = None  # opcode of a fragmented message in progress
        self._frag_len = 0
        self._parts_msg: list[bytes] = []  # fragments of that message

    def read(self) -> list[Message]:
        data = self.sock.recv(self.chunk)
        if not data:
            raise ConnectionError("connection closed by the peer without a close frame")
        if self._parts:
            # Waiting for a frame larger than what we had: collect until it is complete, then
            # join once (no quadratic re-copying for large snapshots).
            self._parts.append(data)
            self._need -= len(data)
            if self._need > 0:
                return []
            data = b"".join(self._parts)
            self._parts = []
        elif self._buf:
            data = self._buf + data
        return self._cut(data)

    def _cut(self, buf: bytes) -> list[Message]:
        out: list[Message] = []
        pos = 0
        end = len(buf)
        while True:
            if end - pos < 2:
                break
            b0 = buf[pos]
            b1 = buf[pos + 1]
            n = b1 & 0x7F
            h = pos + 2
            if n == 126:
                if end - h < 2:
                    break
                n = (buf[h] << 8) | buf[h + 1]
                h += 2
            elif n == 127:
                if end - h < 8:
                    break
                n = int.from_bytes(buf[h : h + 8], "big")
                h += 8
            if b1 & 0x80:
                raise ProtocolError("masked frame from the server")
            if b0 & 0x70:
                raise ProtocolError("reserved bits set (no extension was negotiated)")
            if n > MAX_MESSAGE:
                raise ProtocolError(f"frame of {n} bytes exceeds {MAX_MESSAGE}")
            stop = h + n
            if stop > end:
                break
            payload = buf[h:stop]
            pos = stop
            op = b0 & 0x0F
            if b0 & 0x80 and op:  # the common case: a whole message in one frame
                if op > 0x2 and (op < 0x8 or op > 0xA or n > 125):
                    raise ProtocolError(f"bad opcode {op} or control frame of {n} bytes")
                if op < 0x8 and self._frag_op is not None:
                    raise ProtocolError("new data frame inside a fragmented message")
                out.append((op, payload))
            else:
                self._fragment(b0 & 0x80, op, payload, out)
        rest = buf[pos:]
        self._buf = rest
        if len(rest) >= 2:
            need = self._frame_size(rest)
            if need is not None and need > len(rest) + self.chunk:
                # A large frame is still arriving: switch to collecting parts.
                self._parts = [rest]
                self._need = need - len(rest)
                self._buf = b""
        return out

    @staticmethod
    def _frame_size(buf: bytes) -> int | None:
        n = buf[1] & 0x7F
        if n < 126:
            return 2 + n
        if n == 126:
            return 4 + ((buf[2] << 8) | buf[3]) if len(buf) >= 4 else None
        return 10 + int.from_bytes(buf[2:10], "big") if len(buf) >= 10 else None

    def _fragment(self, fin: int, op: int, payload: bytes, out: list[Message]) -> None:
        if op >= 0x8 or op not in (OP_CONT, OP_TEXT, OP_BINARY):
            raise ProtocolError(f"fragmented control frame or bad opcode {op}")
        if op:  # first fragment of a message
            if self._frag_op is not None:
                raise ProtocolError("new data frame inside a fragmented message")
            self._frag_op = op
            self._parts_msg = [payload]
            self._frag_len = len(payload)
        else:
            if self._frag_op is None:
                raise ProtocolError("continuation frame without a message in progress")
            self._parts_msg.append(payload)
            self._frag_len += len(payload)
        if self._frag_len > MAX_MESSAGE:
            raise ProtocolError(f"fragmented message exceeds {MAX_MESSAGE} bytes")
        if fin:
            out.append((self._frag_op, b"".join(self._parts_msg)))
            self._frag_op = None
            self._parts_msg = []
            self._frag_len = 0
