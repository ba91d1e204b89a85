"""The root of the project's one error tree, and the exchange's branch of it.

`okx/` is the bottom of the import graph (it imports nothing of the project), so the root class
lives here and every other package's errors derive from it; `core.errors` re-exports the whole
tree, so callers import errors from one place. The tree, drawn in full, is in core/errors.py.

Callers catch classes, never match message text or OKX code prefixes: the REST client turns
OKX's codes and HTTP statuses into these classes in one place (okx/rest/client.py `classify`).
Each class also derives from the builtin its callers caught before the tree existed
(RuntimeError, ValueError), so an `except RuntimeError` written then still works.
"""

from __future__ import annotations

__all__ = [
    "AuthFailed",
    "BadReply",
    "BadRequest",
    "BookInvalid",
    "CollectorError",
    "NetworkError",
    "ProtocolError",
    "RateLimited",
    "Rejected",
    "RestError",
    "Unavailable",
]


class CollectorError(Exception):
    """Anything this project raises on purpose. Catch this to catch "any collector error"."""


# ----- WebSocket and book ------------------------------------------------------------------------


class ProtocolError(CollectorError):
    """The server sent something no RFC 6455 server may send here (okx/ws/frames.py); the
    caller drops the connection."""


class BookInvalid(CollectorError, RuntimeError):
    """Raised when reading a book that is not valid (no snapshot yet, gap, mismatch, ...)."""


# ----- REST --------------------------------------------------------------------------------------


class RestError(CollectorError, RuntimeError):
    """An HTTP or OKX-level error; `code` is OKX's code (or the HTTP status) when known.

    `retryable` says whether the same request may succeed later without any change (the REST
    client retries those itself, with backoff, before it gives up and raises)."""

    retryable = False

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class Rejected(RestError):
    """OKX refused the request (a non-zero code that no retry can fix); an unknown code is
    this class itself."""


class BadRequest(Rejected):
    """OKX 51xxx: the request itself is wrong (parameters, unknown instrument). Sending it again,
    now or after any configuration change, gets the same answer."""


class AuthFailed(Rejected):
    """OKX 501xx or HTTP 401/403: authentication or permission. A fixed configuration (a key,
    its permissions, the demo flag) can make the same request succeed later."""


class RateLimited(RestError):
    """OKX 50011 / 50061 / HTTP 429, still there after every retry. `retry_after`: seconds
    until the endpoint may be asked again, when known."""

    retryable = True

    def __init__(
        self, message: str, code: str | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, code)
        self.retry_after = retry_after


class Unavailable(RestError):
    """OKX is busy or down (HTTP 5xx, OKX's "try again later" codes), still after every retry."""

    retryable = True


class NetworkError(Unavailable):
    """No reply at all: a connection failure or timeout."""


class BadReply(RestError):
    """A reply that is not what OKX documents: not JSON, no envelope, rows or fields of the
    wrong type, a page that does not move the cursor. Never stored; not retried."""
