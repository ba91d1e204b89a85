"""One FEEDER_ID, one process: refuse to start while a live feeder holds the id.

Two feeders with one id would write one set of watermarks and one heartbeat: each would take
the other's records as its own (its startup gap and its coverage), which is exactly what the
redundant setup must never do. The holder is the heartbeat `feeder:<id>` (pid, host,
heartbeat_ms). It no longer holds the id when:

- its heartbeat is late (older than HEARTBEAT_LATE_S: the process is gone or hung), or
- it was written on this host by a process that no longer exists (a SIGKILLed feeder
  restarted at once on the same machine need not wait for its old heartbeat to age).

Otherwise the new process waits up to FEEDER_ID_WAIT for the heartbeat to stop (a restart on
another machine, as a platform does after a crash, waits at most that long) and then refuses
with one line (ConfigError: exit 2).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from typing import Any

from core import keys
from core.errors import ConfigError
from core.settings import HEARTBEAT_LATE_S


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    return True


def holder(
    beat: Mapping[str, str],
    *,
    host: str,
    now_ms: int,
    pid_alive: Callable[[int], bool] = _pid_alive,
    own_pid: int | None = None,
) -> str | None:
    """Who still holds the id, as a phrase for the refusal, or None when nobody does. Pure but
    for `pid_alive` (injected in tests)."""
    if not beat or not beat.get("heartbeat_ms"):
        return None
    try:
        age_s = (now_ms - int(beat["heartbeat_ms"])) / 1000
        pid = int(beat.get("pid") or 0)
    except ValueError:
        return None  # not a heartbeat this code wrote: nothing to respect
    if age_s > HEARTBEAT_LATE_S:
        return None
    if beat.get("host") == host and pid and (pid == own_pid or not pid_alive(pid)):
        return None
    where = beat.get("host") or "an unknown host"
    return f"pid {pid or '?'} on {where}, heartbeat {max(age_s, 0.0):.1f} s ago"


def claim_id(
    client: Any,
    feeder_id: str,
    *,
    host: str,
    wait_s: float,
    clock_ms: Callable[[], int],
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Return once no live feeder holds `feeder_id`; raise ConfigError after `wait_s`."""
    deadline = time.monotonic() + wait_s
    while True:
        raw = client.hgetall(keys.feeder_key(feeder_id))
        beat = {_s(k): _s(v) for k, v in raw.items()}
        who = holder(beat, host=host, now_ms=clock_ms(), own_pid=os.getpid())
        if who is None:
            return
        if time.monotonic() >= deadline:
            raise ConfigError(
                f"FEEDER_ID {feeder_id!r} is held by a live feeder ({who}): give each feeder "
                "its own FEEDER_ID (the redundant feeders of a shard share FEEDER_SHARD only)"
            )
        sleep(1.0)


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)
