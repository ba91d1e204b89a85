"""The demo as a test runs it: started like a shell job (its own session and process group, so
Ctrl-C reaches the whole group), its combined output collected line by line on a thread, and its
progress lines ("trades in MongoDB N") read back as numbers."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

PROGRESS = re.compile(r"trades in MongoDB (\d+)")


class DemoProcess:
    def __init__(self, argv: Sequence[str], cwd: Path, env: Mapping[str, str]) -> None:
        self.proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        out = self.proc.stdout
        assert out is not None
        self._reader = threading.Thread(
            target=lambda: self.lines.extend(iter(out.readline, "")), daemon=True
        )
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def progress(self) -> list[int]:
        """Stored-trade counts of every progress line so far; fails if the demo has exited."""
        assert self.proc.poll() is None, self.text
        return [int(m.group(1)) for x in self.lines if (m := PROGRESS.search(x))]

    def wait(self, timeout: float) -> int:
        """The demo's exit code once it has stopped (and its output is all read)."""
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code

    def interrupt(self, timeout: float) -> int:
        """Ctrl-C to the whole group, then wait()."""
        os.killpg(self.proc.pid, signal.SIGINT)
        return self.wait(timeout)

    def kill_if_running(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
