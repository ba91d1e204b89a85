"""A TCP proxy in front of a MongoDB server whose failure mode can be switched at runtime, so that
pymongo meets the faults a deployment meets (docs/fault-matrix.md):

| mode | what a client sees |
|---|---|
| `pass` | the server, unchanged |
| `down` | nothing listens on the port (the listening socket is closed, open connections are reset): connects are refused, so pymongo waits for server selection |
| `hung` | connections are accepted and never answered; open ones stop forwarding: socket timeouts |
| `slow` | every reply (one wire-protocol message) is delivered `delay_s` (0.2 s) after it arrived |
| `refuse` | each connection is accepted and reset at once (open ones are reset too) |

The port stays the same across modes (it is re-bound when `down` ends), so one `mongodb://` URI
serves the whole run. Connections that were held in `hung` are closed when it ends: their
requests were never delivered, and a late answer would only confuse a client that gave up.
Replies are framed by the wire protocol's length prefix, so `slow` delays each whole message
once, however many TCP segments it takes.
"""

from __future__ import annotations

import select
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

from localrun.redis_server import free_port

MODES = ("pass", "down", "hung", "slow", "refuse")
POLL_S = 0.05


def _reset(sock: socket.socket | None) -> None:
    """Close with RST (SO_LINGER 0), as a crashed or refusing server does."""
    if sock is None:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


@dataclass(eq=False)
class _Pipe:
    client: socket.socket
    upstream: socket.socket | None
    hung: bool = False  # accepted or frozen in `hung`: never forwards again
    closed: threading.Event = field(default_factory=threading.Event)

    def close(self) -> None:
        if not self.closed.is_set():
            self.closed.set()
            _reset(self.client)
            _reset(self.upstream)


@dataclass
class MongoFaultProxy:
    """`MongoFaultProxy(upstream_port).start()`; `.uri`; `.set_mode("hung")`; `.stop()`."""

    upstream_port: int
    upstream_host: str = "127.0.0.1"
    port: int = 0
    delay_s: float = 0.2
    mode: str = "pass"
    connections_accepted: int = 0
    _listener: socket.socket | None = None
    _pipes: set[_Pipe] = field(default_factory=set)
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _stopped: threading.Event = field(default_factory=threading.Event)
    _accept_thread: threading.Thread | None = None

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}"

    def start(self) -> MongoFaultProxy:
        if not self.port:
            self.port = free_port()
        self._stopped.clear()
        if self.mode != "down":
            self._listen()
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name=f"mongo-fault-proxy:{self.port}", daemon=True
        )
        self._accept_thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        with self._lock:
            self._close_listener()
            for pipe in list(self._pipes):
                pipe.close()
            self._pipes.clear()
        if self._accept_thread is not None:
            self._accept_thread.join(timeout=5)

    def set_mode(self, mode: str, *, delay_s: float | None = None) -> None:
        """Switch the fault; takes effect for open connections too (see the module doc)."""
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; one of {', '.join(MODES)}")
        with self._lock:
            if delay_s is not None:
                self.delay_s = delay_s
            previous, self.mode = self.mode, mode
            if mode in ("down", "refuse"):
                for pipe in list(self._pipes):
                    pipe.close()
            if mode == "hung":
                for pipe in self._pipes:
                    pipe.hung = True
            elif previous == "hung":
                for pipe in [p for p in self._pipes if p.hung]:
                    pipe.close()
            if mode == "down":
                self._close_listener()
            elif self._listener is None and not self._stopped.is_set():
                self._listen()

    def open_connections(self) -> int:
        with self._lock:
            return sum(1 for p in self._pipes if not p.closed.is_set())

    # ----- sockets ---------------------------------------------------------------------------

    def _listen(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(128)
        self._listener = sock

    def _close_listener(self) -> None:
        if self._listener is not None:
            # shutdown first: the accept thread's select() holds the socket open until it
            # returns; on Linux shutdown() stops the listening at once and wakes it up
            try:
                self._listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                self._listener.close()
            except OSError:
                pass
            self._listener = None

    def _accept_loop(self) -> None:
        while not self._stopped.is_set():
            listener = self._listener
            if listener is None:
                time.sleep(POLL_S)
                continue
            try:
                ready, _, _ = select.select([listener], [], [], POLL_S)
                if not ready:
                    continue
                client, _ = listener.accept()
            except (OSError, ValueError):  # closed by set_mode("down") meanwhile
                continue
            self._admit(client)

    def _admit(self, client: socket.socket) -> None:
        with self._lock:
            self.connections_accepted += 1
            mode = self.mode
        if mode == "refuse":
            _reset(client)
            return
        upstream = None
        if mode != "hung":
            try:
                upstream = socket.create_connection(
                    (self.upstream_host, self.upstream_port), timeout=5
                )
            except OSError:
                _reset(client)
                return
        pipe = _Pipe(client, upstream, hung=mode == "hung")
        with self._lock:
            self._pipes.add(pipe)
        if upstream is not None:
            for target, name in ((self._client_to_server, "c2s"), (self._server_to_client, "s2c")):
                threading.Thread(target=target, args=(pipe,), name=name, daemon=True).start()

    def _forget(self, pipe: _Pipe) -> None:
        pipe.close()
        with self._lock:
            self._pipes.discard(pipe)

    def _client_to_server(self, pipe: _Pipe) -> None:
        assert pipe.upstream is not None
        try:
            while not pipe.closed.is_set():
                if pipe.hung:  # a hung server reads nothing more
                    time.sleep(POLL_S)
                    continue
                ready, _, _ = select.select([pipe.client], [], [], POLL_S)
                if not ready:
                    continue
                data = pipe.client.recv(65536)
                if not data:
                    break
                if not pipe.hung:
                    pipe.upstream.sendall(data)
        except (OSError, ValueError):  # ValueError: select on a socket closed meanwhile
            pass
        self._forget(pipe)

    def _server_to_client(self, pipe: _Pipe) -> None:
        assert pipe.upstream is not None
        try:
            while not pipe.closed.is_set():
                message = self._read_message(pipe)
                if message is None:
                    break
                arrived = time.monotonic()
                if self.mode == "slow":
                    self._sleep_until(pipe, arrived + self.delay_s)
                if pipe.hung or pipe.closed.is_set():
                    continue  # never delivered
                pipe.client.sendall(message)
        except (OSError, ValueError):
            pass
        self._forget(pipe)

    def _sleep_until(self, pipe: _Pipe, when: float) -> None:
        while not pipe.closed.is_set() and (left := when - time.monotonic()) > 0:
            pipe.closed.wait(min(left, POLL_S))

    def _read_message(self, pipe: _Pipe) -> bytes | None:
        """One wire-protocol message (int32 length first), or None at end of stream."""
        header = self._read_exact(pipe, 4)
        if header is None:
            return None
        length = struct.unpack("<i", header)[0]
        if length < 4:
            return None
        rest = self._read_exact(pipe, length - 4)
        return None if rest is None else header + rest

    def _read_exact(self, pipe: _Pipe, n: int) -> bytes | None:
        assert pipe.upstream is not None
        buf = bytearray()
        while len(buf) < n:
            if pipe.closed.is_set():
                return None
            ready, _, _ = select.select([pipe.upstream], [], [], POLL_S)
            if not ready:
                continue
            chunk = pipe.upstream.recv(n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return bytes(buf)

    def __enter__(self) -> MongoFaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
