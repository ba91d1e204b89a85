"""What the request handlers (ws, rest, rest_private), the account publisher and the fault
actions need of the running exchange, as Protocols.

server.Exchange builds all of those modules, so they cannot import server.py back (not even
under TYPE_CHECKING: that is still an import cycle). They import this leaf module instead, and
Exchange satisfies `ExchangeContext` structurally.
"""

from __future__ import annotations

from typing import Any, Protocol

from .account import Account
from .clock import SimClock
from .config import SimConfig
from .conn import Conn
from .faults import FaultState
from .hub import Hub
from .market import Market
from .ratelimit import RateLimiter
from .stats import Stats


class AccountPushes(Protocol):
    """The private-channel publisher, as seen from a subscribe (account_pub.AccountPublisher)."""

    def on_subscribe(self, conn: Conn, channel: str, arg: dict[str, Any]) -> None: ...


class ExchangeContext(Protocol):
    """The exchange's state and the two services handlers use; all on the sim's event loop."""

    cfg: SimConfig
    clock: SimClock
    stats: Stats
    faults: FaultState
    markets: dict[str, Market]
    hub: Hub
    limiter: RateLimiter
    account: Account
    account_pub: AccountPushes
    ticks: int

    def new_conn_id(self) -> str: ...

    def close_later(self, conn: Conn, code: int, message: str) -> None: ...
