"""What the connection state machine (okx/ws/session.py) asks its driver to do: plain values.

`ConnState` returns a list of these from every input; the feeder's socket thread carries them
out (send a frame, close, open a replacement, raise an alert, ...). `Sub` is one subscription's
bookkeeping.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from okx.ws.subscriptions import SubscriptionArg, SubscriptionKey


@dataclass(frozen=True, slots=True)
class Send:
    text: str
    what: str


@dataclass(frozen=True, slots=True)
class Close:
    reason: str


@dataclass(frozen=True, slots=True)
class Replace:
    reason: str


@dataclass(frozen=True, slots=True)
class Alert:
    level: str
    message: str


@dataclass(frozen=True, slots=True)
class Live:
    keys: tuple[SubscriptionKey, ...]


@dataclass(frozen=True, slots=True)
class Stale:
    key: SubscriptionKey
    since: float


@dataclass(frozen=True, slots=True)
class Lost:
    """These subscriptions stopped with the connection (start of a reconnect gap)."""

    keys: tuple[SubscriptionKey, ...] = field(default=())


Action = Send | Close | Replace | Alert | Live | Stale | Lost


@dataclass
class Sub:
    arg: SubscriptionArg
    status: str = "pending"  # pending | sent | acked | failed
    request: str | None = None
    error: str | None = None
    retries: int = 0
    retry_at: float = 0.0
    acked_at: float = 0.0
    last_resub: float = float("-inf")
