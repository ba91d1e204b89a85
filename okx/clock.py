"""The wall clock in OKX's unit: epoch milliseconds as an int.

The one `now_ms` of the project. Pure code takes the time as an argument; the code that calls it
looks the time up here, so a test patches `okx.clock.now_ms` (or passes its own clock) once.
"""

from __future__ import annotations

import time


def now_ms() -> int:
    """Milliseconds since the epoch, now (OKX's `ts`, `uTime`, `cTime` unit)."""
    return int(time.time() * 1000)
