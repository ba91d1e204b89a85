"""Rate-limited logging of bad frames: one line per category per interval, the rest counted."""

from __future__ import annotations

from collections import Counter


class LogLimiter:
    """At most one log line per category every `every` seconds; counts what it suppressed."""

    def __init__(self, every: float = 10.0) -> None:
        self.every = every
        self._next: dict[str, float] = {}
        self._suppressed: Counter[str] = Counter()

    def allow(self, category: str, now: float) -> tuple[bool, int]:
        """(log this one?, how many of the category were suppressed since the last line)."""
        if now >= self._next.get(category, 0.0):
            self._next[category] = now + self.every
            n = self._suppressed.pop(category, 0)
            return True, n
        self._suppressed[category] += 1
        return False, 0


def error_category(reason: str) -> str:
    """The part of a parse error's reason before the first ':' (bounded): a counter label."""
    return reason.split(":", 1)[0][:48]
