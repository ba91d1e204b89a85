"""One reading of the feeder's state: what /healthz, /metrics and the ledger's heartbeat report.

`Feeder.snapshot()` builds it (copying the pipeline's counters under the feeder's lock, so a
scrape never sees them half-updated); health.py renders it and imports nothing else of the feeder.
The values are plain data, so a test can build one by hand and check the rendering without a
feeder, sockets or a broker. Everything here is pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class SubscriptionAge:
    """Seconds since the last data frame of one subscription of one connection."""

    channel: str
    inst: str  # instId, or instType/instFamily for a subscription without an instId
    age_s: float


@dataclass(frozen=True, slots=True)
class ConnectionSnapshot:
    """One running connection thread (a thread that has ended is not in the snapshot)."""

    name: str  # thread name: conn-<endpoint>[-n]
    endpoint: str  # public, business, private
    phase: str  # ConnState.phase: "live" when subscribed and reading
    retired: bool  # replaced (64008) and on its way out: not a health problem
    frames: int  # frames this connection received
    ages: tuple[SubscriptionAge, ...] = ()
    # ConnState.snapshot(): endpoint, state, conn_id, reconnects, last_close, subscriptions
    # (status, error, age_s rounded to ms). The heartbeat and /healthz carry it unchanged.
    state: Mapping[str, Any] = field(default_factory=dict)

    @property
    def live(self) -> bool:
        return self.phase == "live"

    def status(self) -> dict[str, Any]:
        """The connection's entry in /healthz and in the heartbeat."""
        return {**self.state, "name": self.name, "frames": self.frames}


@dataclass(frozen=True, slots=True)
class FeederSnapshot:
    feeder_id: str
    uptime_s: float
    connections: tuple[ConnectionSnapshot, ...] = ()
    # pipeline counters
    frames: int = 0  # every frame fed to the pipeline
    messages_by_channel: Mapping[str, int] = field(default_factory=dict)
    parse_errors: Mapping[str, int] = field(default_factory=dict)  # by reason category
    unknown_frames: Mapping[str, int] = field(default_factory=dict)  # by reason category
    book_resyncs: Mapping[str, int] = field(default_factory=dict)  # by cause
    duplicate_trades: int = 0
    reconnects: int = 0
    # outbox
    backlog_by_kind: Mapping[str, int] = field(default_factory=dict)
    dropped_records: int = 0
    # publisher (defaults: not started yet, nothing to report against it)
    published_records: int = 0
    broker_queue_depth: int = 0
    publish_lingers: int = 0
    broker_ok: bool = True
    # ledger
    gaps_written: int = 0
    ledger_redis_ok: bool = True

    @property
    def backlog(self) -> int:
        """Records waiting in the outbox, all kinds."""
        return sum(self.backlog_by_kind.values())

    def status(self) -> dict[str, Any]:
        """Connection states for /healthz and the heartbeat (`collector status` reads it)."""
        return {"connections": [c.status() for c in self.connections]}

    def problems(self) -> list[str]:
        """Why the feeder is not healthy; empty when it is."""
        problems = [
            f"{c.name} is {c.phase}" for c in self.connections if not c.retired and not c.live
        ]
        if not self.broker_ok:
            problems.append("broker unavailable")
        if not self.ledger_redis_ok:
            problems.append("redis unavailable for the ledger")
        return problems
