"""A WebSocket source that replays frames captured from okxsim as fast as the client reads them.

okxsim generates its market live and tops out near 18,000 frames/s on this machine's other core
(which Redis shares), below the feeder's target, so the feeder's one-core capacity is measured
against this source instead: the same frames okxsim sent (books snapshots and chained updates,
books5, bbo-tbt, trades, tickers), pre-framed once and written with large `sendall` calls, so the
source costs almost no CPU and the socket always has data waiting.

    python bench/replay_source.py --port P --capture ws://HOST:PORT/ws/v5/public \
        --subscribe '[{"channel": "books", "instId": "BTC-USDT"}, ...]' --seconds 6 --total 600000

It first records what okxsim pushes to one subscriber of those args for --seconds (in this
process, so the benchmark's own memory figures stay clean), builds --total frames from it, prints
"ready <frames captured>" and serves.

It answers the WebSocket handshake on any /ws/v5/<endpoint> path, acknowledges every subscribe
argument (echoing the request id, as okxsim does), answers the text `ping` with `pong`, waits for
the first subscribe, then writes --total frames and stays connected. Each replayed loop of the
capture starts with its books snapshots, and tradeIds are shifted per loop, so books chain and
trades are new records in every loop (`Loops`, built one loop ahead of the sender, so any
number of frames costs the memory of two loops).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import itertools
import queue
import socket
import struct
import sys
import threading
import time

import orjson

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def server_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    n = len(payload)
    if n < 126:
        return struct.pack("!BB", 0x80 | opcode, n) + payload
    if n < 65536:
        return struct.pack("!BBH", 0x80 | opcode, 126, n) + payload
    return struct.pack("!BBQ", 0x80 | opcode, 127, n) + payload


_TID = b'"tradeId":"'


def _split_trade_id(frame: bytes) -> tuple[bytes, int, bytes] | None:
    """(before, tradeId, after) of a frame with exactly one tradeId, else None."""
    i = frame.find(_TID)
    if i < 0 or frame.find(_TID, i + 1) >= 0:
        return None
    j = i + len(_TID)
    k = frame.index(b'"', j)
    return frame[:j], int(frame[j:k]), frame[k:]


class Loops:
    """The capture's data frames, replayed loop after loop: in loop k every tradeId is shifted
    by k * 10**9, so each loop's trades are new to the feeder's dedupe (books chain again from
    the snapshots the capture starts with). Event frames are dropped (the source sends its own
    acks). Loops are built on demand, so a run can serve any number of frames."""

    def __init__(self, frames: list[bytes]) -> None:
        self.data = [f for f in frames if f.startswith(b'{"arg"')]
        self.parts = [_split_trade_id(f) if _TID in f else None for f in self.data]

    def frames(self, k: int) -> list[bytes]:
        if k == 0:
            return list(self.data)
        out = []
        shift = k * 10**9
        for f, part in zip(self.data, self.parts):
            if part is not None:
                before, tid, after = part
                f = before + str(tid + shift).encode() + after
            elif _TID in f:  # several trades in one frame
                obj = orjson.loads(f)
                for item in obj["data"]:
                    item["tradeId"] = str(int(item["tradeId"]) + shift)
                f = orjson.dumps(obj)
            out.append(f)
        return out

    def blob(self, k: int) -> bytes:
        """Loop k, framed for the wire."""
        return b"".join(server_frame(f) for f in self.frames(k))


def capture(url: str, args: list, seconds: float) -> list[bytes]:
    import websocket

    ws = websocket.create_connection(url, timeout=5, skip_utf8_validation=True)
    ws.send(orjson.dumps({"op": "subscribe", "args": args}).decode())
    ws.settimeout(0.5)
    frames = []
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        try:
            frames.append(ws.recv_data()[1])
        except websocket.WebSocketTimeoutException:
            pass
    ws.close()
    return frames


def _read_exact(sock: socket.socket, buf: bytearray, n: int) -> bytes:
    while len(buf) < n:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("client closed")
        buf += chunk
    out = bytes(buf[:n])
    del buf[:n]
    return out


def _client_frames(sock: socket.socket, buf: bytearray):
    """Yield (opcode, payload) of the client's (masked) frames."""
    while True:
        b0, b1 = _read_exact(sock, buf, 2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", _read_exact(sock, buf, 2))[0]
        elif n == 127:
            n = struct.unpack("!Q", _read_exact(sock, buf, 8))[0]
        mask = _read_exact(sock, buf, 4) if b1 & 0x80 else b"\0\0\0\0"
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(_read_exact(sock, buf, n)))
        yield b0 & 0x0F, payload


def _serve(conn: socket.socket, loops: Loops, total: int) -> None:
    buf = bytearray()
    while b"\r\n\r\n" not in buf:
        chunk = conn.recv(4096)
        if not chunk:
            return
        buf += chunk
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    key = b""
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"sec-websocket-key:"):
            key = line.split(b":", 1)[1].strip()
    accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
    conn.sendall(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    )
    send_lock = threading.Lock()
    started = threading.Event()

    ready: queue.Queue = queue.Queue(maxsize=2)

    def build() -> None:
        # Loops are built one ahead of the sender (it must never wait for the next one).
        sent = 0
        for k in itertools.count():
            if sent >= total:
                ready.put(None)
                return
            ready.put(loops.blob(k))
            sent += len(loops.data)

    def blast() -> None:
        started.wait()
        step = 1 << 18
        try:
            while (blob := ready.get()) is not None:
                view = memoryview(blob)
                for i in range(0, len(view), step):
                    with send_lock:
                        conn.sendall(view[i : i + step])
        except OSError:
            return  # the client went away: the benchmark run is over

    threading.Thread(target=build, daemon=True).start()
    threading.Thread(target=blast, daemon=True).start()
    try:
        for opcode, payload in _client_frames(conn, bytearray(rest)):
            if opcode == 0x8:
                return
            if payload == b"ping":
                with send_lock:
                    conn.sendall(server_frame(b"pong"))
                continue
            req = orjson.loads(payload)
            acks = b"".join(
                server_frame(
                    orjson.dumps(
                        {"id": req.get("id"), "event": req["op"], "arg": a, "connId": "replay"}
                    )
                )
                for a in req.get("args", [])
            )
            with send_lock:
                conn.sendall(acks)
            started.set()
    except (ConnectionError, OSError):
        return


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--capture", required=True, help="okxsim WebSocket URL to record from")
    ap.add_argument("--subscribe", required=True, help="JSON list of subscribe args")
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--total", type=int, default=600_000, help="frames to serve in all")
    args = ap.parse_args()
    frames = capture(args.capture, orjson.loads(args.subscribe), args.seconds)
    loops = Loops(frames)
    srv = socket.create_server(("127.0.0.1", args.port))
    print("ready", len(loops.data), flush=True)
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=_serve, args=(conn, loops, args.total), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
