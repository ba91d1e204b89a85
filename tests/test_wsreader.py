"""okx.ws.frames: cutting server WebSocket frames out of a real socket's byte stream."""

from __future__ import annotations

import socket
import struct
import threading

import pytest

from okx.ws.frames import OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_TEXT, FrameReader, ProtocolError


def frame(
    payload: bytes, opcode: int = OP_TEXT, fin: bool = True, rsv: int = 0, mask: bool = False
) -> bytes:
    b0 = (0x80 if fin else 0) | rsv | opcode
    n = len(payload)
    m = 0x80 if mask else 0
    if n < 126:
        head = struct.pack("!BB", b0, m | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, m | 126, n)
    else:
        head = struct.pack("!BBQ", b0, m | 127, n)
    if mask:
        return head + b"\0\0\0\0" + payload
    return head + payload


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    a.settimeout(2)
    yield a, b
    a.close()
    b.close()


def send_later(sock: socket.socket, chunks: list[bytes]) -> threading.Thread:
    """Write from another thread: large frames do not fit in the socket buffer at once."""
    t = threading.Thread(target=lambda: [sock.sendall(c) for c in chunks], daemon=True)
    t.start()
    return t


def read_all(reader: FrameReader, want: int) -> list:
    out = []
    while len(out) < want:
        out.extend(reader.read())
    return out


def test_many_frames_in_one_read_keep_order_and_bytes(pair):
    a, b = pair
    payloads = [b'{"arg":{"channel":"trades"},"n":%d}' % i for i in range(300)]
    b.sendall(b"".join(frame(p) for p in payloads) + frame(b"\x00\xff", OP_BINARY))
    got = read_all(FrameReader(a), 301)
    assert got == [(OP_TEXT, p) for p in payloads] + [(OP_BINARY, b"\x00\xff")]


def test_frames_split_at_every_byte(pair):
    a, b = pair
    stream = frame(b"x" * 10) + frame(b"y" * 300) + frame(b"z" * 70000)
    reader = FrameReader(a, chunk=4096)
    # The first 400 bytes one at a time (headers and payloads cut anywhere), then the rest.
    sender = send_later(b, [stream[i : i + 1] for i in range(400)] + [stream[400:]])
    got = read_all(reader, 3)
    sender.join(2)
    assert got == [(OP_TEXT, b"x" * 10), (OP_TEXT, b"y" * 300), (OP_TEXT, b"z" * 70000)]


def test_large_frame_larger_than_the_read_chunk(pair):
    a, b = pair
    big = bytes(range(256)) * 4000  # 1 MB, 64-bit length
    reader = FrameReader(a, chunk=8192)
    sender = send_later(b, [frame(big) + frame(b"after")])
    assert read_all(reader, 2) == [(OP_TEXT, big), (OP_TEXT, b"after")]
    sender.join(2)


def test_fragmented_message_joined_with_a_control_frame_between(pair):
    a, b = pair
    b.sendall(
        frame(b"hel", OP_TEXT, fin=False)
        + frame(b"hi", OP_PING)
        + frame(b"lo ", OP_CONT, fin=False)
        + frame(b"world", OP_CONT)
    )
    assert read_all(FrameReader(a), 2) == [(OP_PING, b"hi"), (OP_TEXT, b"hello world")]


def test_close_frame_is_returned(pair):
    a, b = pair
    b.sendall(frame(struct.pack("!H", 4004) + b"idle", OP_CLOSE))
    assert read_all(FrameReader(a), 1) == [(OP_CLOSE, b"\x0f\xa4idle")]


@pytest.mark.parametrize(
    "raw, why",
    [
        (frame(b"x", mask=True), "masked"),
        (frame(b"x", rsv=0x40), "reserved"),
        (frame(b"x", opcode=0x3), "opcode"),
        (frame(b"x" * 126, opcode=OP_PING), "control"),
        (frame(b"x", opcode=OP_CONT), "continuation"),
        (frame(b"a", OP_TEXT, fin=False) + frame(b"b", OP_TEXT), "inside a fragmented"),
    ],
)
def test_protocol_violations_raise(pair, raw, why):
    a, b = pair
    b.sendall(raw)
    with pytest.raises(ProtocolError, match=why):
        FrameReader(a).read()


def test_peer_gone_and_timeout(pair):
    a, b = pair
    a.settimeout(0.05)
    reader = FrameReader(a)
    with pytest.raises(TimeoutError):
        reader.read()
    b.sendall(frame(b"last"))
    b.close()
    assert read_all(reader, 1) == [(OP_TEXT, b"last")]
    with pytest.raises(ConnectionError):
        reader.read()
