"""Start and stop a private MongoDB wire-protocol server (nx-27017 on SQLite) on a free loopback
port, for the integration tests, the fault matrix and the offline demo.

No machine here can run mongod, so the production client (pymongo, `mongodb://` URIs) talks to
nx-27017 instead: a MongoDB wire-protocol server that keeps each database in an SQLite file under
`data_dir`. The data survives stop()/start() (a restarted demo keeps its history); wipe() empties
it (a server that comes back with its data lost). It runs through localrun/mongo_wire_main.py,
which works around what nx-27017 gets wrong for us (docs/mongodb-wire.md).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from localrun.processes import end_server
from localrun.redis_server import free_port

REPO_ROOT = Path(__file__).resolve().parent.parent


class MongoServerError(RuntimeError):
    """The wire-protocol server did not start or did not answer."""


@dataclass
class MongoServer:
    """An nx-27017 child process. `workdir` holds `data/` (one SQLite file per database) and the
    logs; it is kept across stop()/start(), so is the port once chosen."""

    port: int = 0
    workdir: str | None = None
    proc: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}"

    @property
    def data_dir(self) -> Path:
        return Path(self._workdir()) / "data"

    @property
    def log_path(self) -> Path:
        return Path(self._workdir()) / "nx-27017.log"

    def _workdir(self) -> str:
        if self.workdir is None:
            self.workdir = tempfile.mkdtemp(prefix="okx-mongo-")
        return self.workdir

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 20.0) -> MongoServer:
        if self.running():
            return self
        if not self.port:
            self.port = free_port()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        console = open(Path(self._workdir()) / "console.log", "ab")  # noqa: SIM115 - child keeps it
        env = {**os.environ, "PYTHONPATH": _pythonpath()}
        args = [
            sys.executable,
            "-m",
            "localrun.mongo_wire_main",
            "--host",
            "127.0.0.1",
            "-p",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            "--log-file",
            str(self.log_path),
            "--pid-file",
            str(Path(self._workdir()) / "nx-27017.pid"),
        ]
        # Own session, as for redis-server: a Ctrl-C in the demo's terminal reaches the demo,
        # which stops this server after the workers.
        try:
            self.proc = subprocess.Popen(
                args,
                stdout=console,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=self._workdir(),
                env=env,
            )
        finally:
            console.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise MongoServerError(
                    f"nx-27017 exited with {self.proc.returncode} on port {self.port}: "
                    f"{self.log_tail()}"
                )
            if self.ping():
                return self
            time.sleep(0.05)
        self.stop(kill=True)
        raise MongoServerError(
            f"nx-27017 did not answer ping on port {self.port} within {timeout}s: {self.log_tail()}"
        )

    def ping(self, timeout_ms: int = 500) -> bool:
        """True when pymongo's `ping` command answers."""
        from pymongo import MongoClient
        from pymongo.errors import PyMongoError

        client: MongoClient = MongoClient(
            self.uri,
            serverSelectionTimeoutMS=timeout_ms,
            connectTimeoutMS=timeout_ms,
            socketTimeoutMS=timeout_ms * 4,
        )
        try:
            return client.admin.command("ping").get("ok") == 1
        except PyMongoError:
            return False
        finally:
            client.close()

    def log_tail(self, chars: int = 1500) -> str:
        parts = []
        for name in ("console.log", "nx-27017.log"):
            path = Path(self._workdir()) / name
            if path.exists():
                text = path.read_text(errors="replace").strip()
                if text:
                    parts.append(f"[{name}] {text[-chars:]}")
        return " | ".join(parts) or "(no log output)"

    def stop(self, kill: bool = False) -> None:
        if self.proc is not None:
            end_server(self.proc, kill)

    def wipe(self, timeout: float = 20.0) -> MongoServer:
        """Lose every database: the server comes back empty, on the same port (if it was
        running)."""
        was_running = self.running()
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)
        if was_running:
            self.start(timeout)
        return self

    def remove(self) -> None:
        """Stop and delete the workdir (data and logs)."""
        self.stop()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> MongoServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _pythonpath() -> str:
    """The child must import this tree's localrun/, whatever the caller's cwd."""
    current = os.environ.get("PYTHONPATH", "")
    return os.pathsep.join(p for p in (str(REPO_ROOT), current) if p)
