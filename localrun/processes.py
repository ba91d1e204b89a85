"""Process-tree helpers for the demo and the tests: find every descendant, stop, make sure.

A Procfile process runs as `sh -c` -> celery -> pool children, each type in its own session
(honcho), so "no process left behind" means walking the tree, not just waiting for one pid.
Linux only (/proc), like the rest of localrun.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable


def children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out.extend(int(p) for p in f.read().split())
        except OSError:
            continue
    return out


def descendants(pid: int) -> set[int]:
    """Every process below `pid` right now (not `pid` itself)."""
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children(todo.pop()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def identity(pid: int) -> tuple[int, str] | None:
    """(pid, start time): a pid alone may be reused by an unrelated process after ours exits."""
    st = _stat(pid)
    return None if st is None else (pid, st[19])


def identities(pids: Iterable[int]) -> set[tuple[int, str]]:
    return {i for i in map(identity, pids) if i is not None}


def alive(ident: tuple[int, str]) -> bool:
    """True while that very process runs; a zombie (exited, not yet reaped) counts as gone."""
    st = _stat(ident[0])
    return st is not None and st[19] == ident[1] and st[0] not in ("Z", "X")


def stop_process(proc: subprocess.Popen, what: str = "process", timeout: float = 20) -> None:
    """SIGTERM, wait up to `timeout`, then SIGKILL (saying so). Only the process we started."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        print(
            f"{what} (pid {proc.pid}) did not stop within {timeout:.0f} s; killing it",
            file=sys.stderr,
        )
        proc.kill()
        proc.wait()


def end_server(proc: subprocess.Popen, kill: bool = False, timeout: float = 10) -> None:
    """A harness server (redis-server, the wire-protocol MongoDB): SIGTERM (SIGKILL with
    `kill`, a crash as tests inject it), wait up to `timeout`, then SIGKILL, silently."""
    if proc.poll() is not None:
        return
    if kill:
        proc.kill()
    else:
        proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def kill_all(idents: Iterable[tuple[int, str]], grace_s: float = 2.0) -> list[int]:
    """SIGKILL whichever of these processes still runs after `grace_s`; returns their pids."""
    deadline = time.monotonic() + grace_s
    left = [i for i in idents if alive(i)]
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = [i for i in left if alive(i)]
    for pid, _ in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if left:
        print(
            f"demo: killed {len(left)} leftover process(es): {[p for p, _ in left]}",
            file=sys.stderr,
        )
    return [p for p, _ in left]
