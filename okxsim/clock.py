"""Simulated clock: real-ish epoch milliseconds that only move with the monotonic clock.

`speed` > 1 runs simulated time faster than real time (tests: ten minutes of trading in thirty
seconds). Exchange timestamps (trades, books, candles, orders) follow the simulated clock;
signature checks use `wall_s()`, since clients sign with their own wall clock.
"""

from __future__ import annotations

import time


class SimClock:
    """Epoch ms anchored to wall time once, then advanced by time.monotonic x speed (never jumps
    back)."""

    def __init__(self, speed: float = 1.0) -> None:
        if speed <= 0:
            raise ValueError("clock speed must be > 0")
        self.speed = speed
        self._wall0 = time.time()
        self._mono0 = time.monotonic()

    def now_s(self) -> float:
        return self._wall0 + (time.monotonic() - self._mono0) * self.speed

    def now_ms(self) -> int:
        return int(self.now_s() * 1000)

    @staticmethod
    def wall_s() -> float:
        """The real wall clock: what a client's signature timestamp is compared with."""
        return time.time()
