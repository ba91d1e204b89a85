"""Fault state set by POST /sim/faults and read by the publisher, the WS handler and REST."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from .hostile import HostileFault

KINDS = (
    "drop",
    "stall",
    "gap",
    "corrupt",
    "malformed",
    "notice",
    "reject_login",
    "rate_limit",
    "pause",
    "hostile",
)


@dataclass
class FaultState:
    gap: set[str] = field(default_factory=set)  # instIds whose next books update is skipped
    corrupt: set[str] = field(default_factory=set)  # instIds whose next update has a bad checksum
    reject_login_until: float = 0.0  # monotonic deadline (seconds given)
    reject_login_next: int = 0  # number of next logins to reject
    rate_limit_until: float = 0.0
    history: list[dict] = field(default_factory=list)  # every fault applied, for /sim/stats
    hostile: HostileFault | None = None  # the current (or last) hostile window
    hostile_log: list[dict[str, Any]] = field(default_factory=list)  # every copy ever sent

    def login_rejected(self) -> bool:
        if self.reject_login_until > time.monotonic():
            return True
        if self.reject_login_next > 0:
            self.reject_login_next -= 1
            return True
        return False

    def rate_limited(self) -> bool:
        return self.rate_limit_until > time.monotonic()
