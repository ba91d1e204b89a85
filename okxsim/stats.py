"""Counters for GET /sim/stats."""

from __future__ import annotations

from collections import Counter


class Stats:
    def __init__(self) -> None:
        self.per_channel: Counter[str] = Counter()
        self.messages = 0
        self.connections_total = 0

    def count(self, channel: str) -> None:
        self.messages += 1
        self.per_channel[channel] += 1
