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

from collector.supervisor import ThreadSnapshot

# Defaults of the health thresholds (core/settings.py: FEEDER_UNHEALTHY_AFTER,
# FEEDER_PARSE_ERRORS_PER_MIN); a snapshot built by hand gets these.
UNHEALTHY_AFTER_S = 5.0
PARSE_ERRORS_PER_MIN = 60
# ...and more than this share of the minute's frames: a feed that OKX (or an attacker) salts
# with bad frames is still healthy while most frames are good; one whose format broke is not.
PARSE_ERROR_SHARE = 0.5


@dataclass(frozen=True, slots=True)
class SubscriptionAge:
    """Seconds since the last data frame of one subscription of one connection."""

    channel: str
    inst: str  # instId, or instType/instFamily for a subscription without an instId
    age_s: float


@dataclass(frozen=True, slots=True)
class ConnectionSnapshot:
    """One configured connection: its thread runs (or is being restarted by the supervisor);
    a thread that ended without being retired is listed with phase "dead", never left out."""

    name: str  # thread name: conn-<endpoint>[-n]
    endpoint: str  # public, business, private
    phase: str  # ConnState.phase: "live" when subscribed and reading
    retired: bool  # replaced (64008) and on its way out: not a health problem
    frames: int  # frames this connection received
    ages: tuple[SubscriptionAge, ...] = ()
    # ConnState.snapshot(): endpoint, state, conn_id, reconnects, last_close, subscriptions
    # (status, error, age_s rounded to ms). The heartbeat and /healthz carry it unchanged.
    state: Mapping[str, Any] = field(default_factory=dict)
    # seconds since the connection stopped being live (None: live). Health allows a short
    # reconnect (UNHEALTHY_AFTER_S) before calling it a problem.
    down_s: float | None = None
    # acked subscriptions silent past their staleness window ("books:BTC-USDT (47 s)")
    stale: tuple[str, ...] = ()

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
    claimed_by_peer: int = 0  # records left out at publish: the shard's other feeder pushed them
    publish_role: str = "alone"  # alone | leader | standby (collector/claims.py)
    broker_ok: bool = True
    # ledger
    gaps_written: int = 0
    ledger_redis_ok: bool = True
    # supervision (collector/supervisor.py): every supervised thread
    threads: tuple[ThreadSnapshot, ...] = ()
    # parse errors in the last minute, and the thresholds the verdict uses (settings)
    parse_errors_last_min: int = 0
    parse_errors_per_min_max: int = PARSE_ERRORS_PER_MIN
    frames_last_min: int = 0
    parse_error_share_max: float = PARSE_ERROR_SHARE
    unhealthy_after_s: float = UNHEALTHY_AFTER_S
    broker_error: str | None = None
    shard: str = "default"
    shard_members: Mapping[str, bool] = field(default_factory=dict)  # feeder id -> live

    @property
    def backlog(self) -> int:
        """Records waiting in the outbox, all kinds."""
        return sum(self.backlog_by_kind.values())

    def status(self) -> dict[str, Any]:
        """Connection states, threads and the verdict's reasons for /healthz and the heartbeat
        (`collector status` reads it from Redis: it reports the same problems)."""
        return {
            "connections": [c.status() for c in self.connections],
            "threads": [t.status() for t in self.threads],
            "problems": self.problems(),
            "shard": self.shard,
            "warnings": self.warnings(),
        }

    def warnings(self) -> list[str]:
        """What weakens the collection without stopping it: a shard that had two or more feeders
        and has one live left (every gap of that one is now a gap of the shard)."""
        live = sorted(f for f, up in self.shard_members.items() if up)
        if len(self.shard_members) >= 2 and len(live) <= 1:
            down = sorted(f for f, up in self.shard_members.items() if not up)
            return [
                f"shard {self.shard} is down to {len(live)} live feeder"
                f"{' (' + live[0] + ')' if live else 's'}: {', '.join(down)} not heartbeating; "
                "no redundancy"
            ]
        return []

    def problems(self) -> list[str]:
        """Why the feeder is not healthy; empty when it is."""
        problems = []
        for c in self.connections:
            if c.retired or c.live:
                continue
            if c.phase == "dead":
                problems.append(f"{c.name} is dead (its thread ended)")
            elif c.down_s is None or c.down_s > self.unhealthy_after_s:
                down = "" if c.down_s is None else f" for {c.down_s:.1f} s"
                problems.append(f"{c.name} is {c.phase}{down}")
        for c in self.connections:
            if c.live:
                problems += [f"{c.name}: no data from {sub}" for sub in c.stale]
        for t in self.threads:
            if t.looping:
                problems.append(
                    f"thread {t.name} is restarting in a loop ({t.restarts} restarts; "
                    f"last: {t.last_error})"
                )
            elif not t.up:
                problems.append(f"thread {t.name} is down (last: {t.last_error})")
            elif t.last_crash_age_s is not None and t.last_crash_age_s < self.unhealthy_after_s:
                # A crash is a bug and, for a reader, a gap: visible for a while even when the
                # restart was quick (a poll every few seconds would miss the restart itself).
                problems.append(
                    f"thread {t.name} crashed {t.last_crash_age_s:.1f} s ago and was restarted "
                    f"({t.last_error})"
                )
        if not self.broker_ok:
            why = f" ({self.broker_error})" if self.broker_error else ""
            problems.append(f"broker unavailable{why}; {self.backlog} records waiting")
        if not self.ledger_redis_ok:
            problems.append("redis unavailable for the ledger")
        errors = self.parse_errors_last_min
        if errors > self.parse_errors_per_min_max and errors > (
            self.parse_error_share_max * self.frames_last_min
        ):
            problems.append(
                f"{errors} parse errors in the last minute of {self.frames_last_min} frames "
                f"(more than {self.parse_errors_per_min_max} and "
                f"{self.parse_error_share_max:.0%} of the frames)"
            )
        return problems


class RateWindow:
    """How much a cumulative counter grew over the last `window_s`, from samples taken at each
    snapshot (the ledger takes one every heartbeat, /healthz at every request). Pure."""

    def __init__(self, window_s: float = 60.0) -> None:
        self.window_s = window_s
        self._samples: list[tuple[float, int]] = []

    def add(self, now: float, total: int) -> int:
        """Record `total` at `now`; return its growth since the oldest sample in the window."""
        samples = self._samples
        samples.append((now, total))
        cut = 0
        while cut < len(samples) - 1 and samples[cut + 1][0] <= now - self.window_s:
            cut += 1
        del samples[:cut]
        return total - samples[0][1]
