"""bench/api.py's clients and its paced, interleaved measurement of the latest-state reads.

Fairness (docs/read-api.md, "Benchmark"): the direct read is redis-py (hiredis parser) over one
kept connection, so the HTTP side gets a client of the same kind: one kept connection, the
request bytes built once, the reply's status line and Content-Length read and the body taken
(`RawHttp`). The stdlib's http.client, which the bench used before, parses every header through
the email package and costs the client ~0.2 ms a call more than redis-py does: it stays as a
second column, to show what a heavier client adds. Every client runs in this one process, paced
at the same rate, and the clients take turns in short blocks (`interleaved`), so each sees the
same machine load; measuring one for 10 s and then the other let a neighbour's burst land on
one side only.
"""

from __future__ import annotations

import http.client
import socket
import time
from collections.abc import Callable
from typing import Any

from bench.common import cpu_seconds

Call = Callable[[], Any]


def paced(call: Call, rate: float, seconds: float) -> list[float]:
    """Latencies (ms) of `call` run every 1/rate s for `seconds` (open loop, no catch-up burst)."""
    period = 1.0 / rate
    out = []
    nxt = time.perf_counter()
    end = nxt + seconds
    while nxt < end:
        now = time.perf_counter()
        if now < nxt:
            time.sleep(nxt - now)
        t = time.perf_counter()
        call()
        out.append((time.perf_counter() - t) * 1000)
        nxt += period
        if time.perf_counter() > nxt + period:  # fell behind: do not fire a burst to catch up
            nxt = time.perf_counter()
    return out


class RawHttp:
    """A minimal keep-alive HTTP/1.1 GET client: what hiredis is to redis-py's replies."""

    def __init__(self, port: int, path: str, headers: dict[str, str] | None = None) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.request = ("\r\n".join(lines) + "\r\n\r\n").encode()
        self.path = path

    def __call__(self) -> bytes:
        self.sock.sendall(self.request)
        buf = b""
        while True:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise RuntimeError(f"{self.path}: connection closed")
            buf += chunk
            head, sep, body = buf.partition(b"\r\n\r\n")
            if sep:
                break
        if not head.startswith(b"HTTP/1.1 200 "):
            raise RuntimeError(f"{self.path}: {head[:60]!r}")
        length = _content_length(head)
        while len(body) < length:
            body += self.sock.recv(65536)
        return body

    def close(self) -> None:
        self.sock.close()


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            return int(value)
    raise RuntimeError("no Content-Length in the reply")


def stdlib_http(port: int, path: str, headers: dict[str, str] | None = None) -> Call:
    """http.client over one kept connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    hdrs = headers or {}

    def call() -> bytes:
        conn.request("GET", path, headers=hdrs)
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"{path}: {resp.status} {body[:200]!r}")
        return body

    return call


def interleaved(
    calls: dict[str, tuple[Call, int | None]],
    rate: float,
    seconds: float,
    block_s: float = 0.5,
) -> dict[str, dict[str, Any]]:
    """Each call paced at `rate` for `seconds` in all, the calls taking turns in blocks of
    `block_s`. Per call: its latencies (ms), its client CPU per call (ms, this process) and,
    when a server pid is given, the server's CPU per call (ms, /proc)."""
    out = {name: {"lat": [], "client_cpu": 0.0, "server_cpu": 0.0} for name in calls}
    for call, _ in calls.values():
        for _ in range(200):  # warm up: connections, caches
            call()
    done = 0.0
    while done < seconds:
        for name, (call, pid) in calls.items():
            server0 = cpu_seconds(pid) if pid else 0.0
            client0 = time.process_time()
            out[name]["lat"] += paced(call, rate, block_s)
            out[name]["client_cpu"] += time.process_time() - client0
            out[name]["server_cpu"] += (cpu_seconds(pid) - server0) if pid else 0.0
        done += block_s
    for row in out.values():
        n = len(row["lat"])
        row["client_cpu_ms"] = row.pop("client_cpu") / n * 1000
        row["server_cpu_ms"] = row.pop("server_cpu") / n * 1000
    return out
