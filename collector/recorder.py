"""--record FILE: every received frame in the replay format, one JSON object a line:
{"ts": receive time (Unix s), "endpoint": "public", "frame": "<raw text>"}. Buffered in memory
(written in large chunks by whichever reader fills the buffer), flushed on exit.
"""

from __future__ import annotations

import threading

import orjson

FLUSH_BYTES = 1 << 20


class Recorder:
    def __init__(self, path: str) -> None:
        self.path = path
        self._fh = open(path, "ab")  # noqa: SIM115 - closed in close()
        self._buf: list[bytes] = []
        self._size = 0
        self._lock = threading.Lock()
        self.frames = 0

    def add(self, ts: float, endpoint: str, frame: str | bytes) -> None:
        if isinstance(frame, bytes):
            frame = frame.decode("utf-8", errors="replace")
        line = orjson.dumps({"ts": ts, "endpoint": endpoint, "frame": frame}) + b"\n"
        with self._lock:
            self._buf.append(line)
            self._size += len(line)
            self.frames += 1
            if self._size >= FLUSH_BYTES:
                self._write()

    def _write(self) -> None:
        if self._buf:
            self._fh.write(b"".join(self._buf))
            self._buf.clear()
            self._size = 0

    def flush(self) -> None:
        with self._lock:
            self._write()
            self._fh.flush()

    def close(self) -> None:
        self.flush()
        self._fh.close()
