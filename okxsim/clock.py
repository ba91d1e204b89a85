"""Simulated clock: real-ish epoch milliseconds that only move with the monotonic clock."""
from __future__ import annotations

import time


class SimClock:
    """Epoch ms anchored to wall time once, then advanced by time.monotonic (never jumps back)."""

    def __init__(self) -> None:
        self._wall0 = time.time()
        self._mono0 = time.monotonic()

    def now_ms(self) -> int:
        return int((self._wall0 + time.monotonic() - self._mono0) * 1000)

    def now_s(self) -> float:
        return self._wall0 + time.monotonic() - self._mono0
