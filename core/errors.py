"""The one error tree: every exception the project raises on purpose, importable from here.

    CollectorError                      (okx.errors: the root)
     +-- ProtocolError                  okx: a WebSocket frame no server may send; drop the socket
     +-- BookInvalid                    okx: reading a book that is not valid (also RuntimeError)
     +-- RestError                      okx: an HTTP or OKX-level failure, `code` (RuntimeError)
     |    +-- Rejected                  OKX said no and retrying cannot change it (unknown codes)
     |    |    +-- BadRequest           51xxx: the request itself is wrong; a repair gives up
     |    |    +-- AuthFailed           501xx, HTTP 401/403: a fixed configuration can help
     |    |         +-- NoCredentials   a private request without OKX API credentials
     |    +-- RateLimited               50011/50061/HTTP 429 after every retry; `retry_after`
     |    +-- Unavailable               HTTP 5xx, OKX busy codes after every retry
     |    |    +-- NetworkError         no reply at all (connection failure, timeout)
     |    +-- BadReply                  a reply OKX does not document; never stored
     +-- ConfigError                    a setting cannot work; the message names it (ValueError)
     +-- PlanError                      a gap or request that cannot be planned (ValueError)
     +-- BadGap                         a gap value that cannot be stored, or a hash that is no gap
     +-- BadBatch                       a task argument that is no batch envelope (ValueError)
          +-- BadRecord                 one record of a valid envelope cannot be stored

`RestError.retryable` is True for RateLimited and Unavailable: the REST client retries those
itself before raising. Catch the class that means what you will do about it; never look at the
message text or at an OKX code's digits (okx/rest/client.py `classify` does that, once).

The classes that okx/ raises live in okx/errors.py (okx/ imports nothing of the project); the
project's own live here. Their old homes (okx.rest.client, okx.book, okx.ws.frames,
core.contract, tasks.documents, tasks.backfill.plan, tasks.backfill.source) re-export them.
"""

from __future__ import annotations

from okx.errors import (
    AuthFailed,
    BadReply,
    BadRequest,
    BookInvalid,
    CollectorError,
    NetworkError,
    ProtocolError,
    RateLimited,
    Rejected,
    RestError,
    Unavailable,
)

__all__ = [
    "AuthFailed",
    "BadBatch",
    "BadGap",
    "BadRecord",
    "BadReply",
    "BadRequest",
    "BookInvalid",
    "CollectorError",
    "ConfigError",
    "NetworkError",
    "NoCredentials",
    "PlanError",
    "ProtocolError",
    "RateLimited",
    "Rejected",
    "RestError",
    "Unavailable",
]


class ConfigError(CollectorError, ValueError):
    """The configuration cannot work; the message says which setting and why."""


class PlanError(CollectorError, ValueError):
    """A gap or request that cannot be planned; the message says why (stored as the reason)."""


class BadGap(CollectorError, ValueError):
    """A gap value that cannot be stored, or a stored hash that is not a gap; the message says
    which field and why."""


class BadBatch(CollectorError, ValueError):
    """A task argument that is not a batch envelope this version understands."""


class BadRecord(BadBatch):
    """One record of a valid envelope lacks what its kind needs (a natural-key field, a time)."""


class NoCredentials(AuthFailed):
    """A private request (a repair of orders, fills or the account) without OKX_API_KEY /
    OKX_API_SECRET / OKX_API_PASSPHRASE."""
