"""The OKX v5 REST client: paced, signed, retried, and suspicious of every reply.

Callers parse replies with okx/rest/endpoints.py (one parser per reply kind): the feeder's REST
book snapshots (`book`), backfill's and audit's history pages. One GET:

    pace (okx.rest.ratelimit: per-endpoint sliding windows, shared through Redis by every
          process when REDIS_URL is set, else by the whole process)
    -> sign (private paths; the demo header when demo) -> send (stdlib urllib)
    -> check the envelope: {"code": "0", "data": [...]}, rows of the expected type
    -> on a transient failure (network error, timeout, HTTP 5xx, OKX busy codes, 50011 / 429)
       back off with capped, jittered exponential delays and try again, up to max_retries;
       on a failure retrying cannot fix (bad parameters 51xxx, authentication 501xx, ...) raise
       at once.

Failures raise the okx.errors class that says what to do about them (`error_class` and
`http_error_class` read OKX's codes and HTTP statuses, once): RateLimited and Unavailable
(NetworkError) after the retries, BadRequest (51xxx), AuthFailed (501xx, 401/403), Rejected
(other codes), BadReply. Errors carry OKX's code and a message naming the path, never a
header, a secret or the signed query. Every attempt is counted (module-level prometheus
counters, so a worker's /metrics shows them).
"""

from __future__ import annotations

import http.client
import logging
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import orjson
from prometheus_client import Counter

from okx.backoff import backoff_delay
from okx.errors import (
    AuthFailed,
    BadReply,
    BadRequest,
    NetworkError,
    RateLimited,
    Rejected,
    RestError,
    Unavailable,
)
from okx.rest.ratelimit import Limits, NoLimits, endpoint_of, process_limits
from okx.signing import Credentials, request_path, rest_headers

# The errors are okx.errors'; importable from here as well, where they were first defined.
__all__ = [
    "AuthFailed",
    "BadReply",
    "BadRequest",
    "NetworkError",
    "RateLimited",
    "Rejected",
    "RestClient",
    "RestError",
    "Unavailable",
    "check_envelope",
    "classify",
    "error_class",
    "http_error_class",
    "retry_delay",
]

log = logging.getLogger(__name__)

REQUESTS = Counter(
    "okx_rest_requests",
    "OKX REST attempts by endpoint and outcome "
    "(ok, rate_limited, retryable, rejected, bad_reply, network)",
    ["endpoint", "outcome"],
)
WAIT_SECONDS = Counter(
    "okx_rest_wait_seconds", "Seconds spent waiting for a rate-limit slot", ["endpoint"]
)
RATE_LIMITED = Counter("okx_rest_rate_limited", "Replies 50011 / HTTP 429 from OKX", ["endpoint"])

MAX_BODY = 32 * 1024 * 1024  # a 5000-level books-full reply is ~0.5 MB; more is not OKX
BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 10.0
RATE_LIMIT_CODES = frozenset({"50011", "50061"})  # 50061: the sub-account's overall limit
# OKX's "try again later" family: service unavailable, endpoint timeout, system busy/error
RETRYABLE_CODES = frozenset({"50001", "50004", "50013", "50026"})
AUTH_PREFIX = "501"  # 50100-50119: API key, signature, timestamp, IP, permission
REQUEST_PREFIX = "51"  # 51000-51999: the request's parameters, instrument, order


# ----- the one classification of OKX's answers -------------------------------------------------


def error_class(code: str) -> type[RestError] | None:
    """OKX code -> the class to raise (None for "0"). The only place that reads a code's digits:
    callers catch the classes."""
    if code == "0":
        return None
    if code in RATE_LIMIT_CODES:
        return RateLimited
    if code in RETRYABLE_CODES:
        return Unavailable
    if code.startswith(AUTH_PREFIX):
        return AuthFailed
    if code.startswith(REQUEST_PREFIX):
        return BadRequest
    return Rejected  # a code we do not know: refused, and no retry can be sure to help


def http_error_class(status: int) -> type[RestError]:
    """An HTTP status without an OKX envelope to say more -> the class to raise."""
    if status == 429:
        return RateLimited
    if status >= 500:
        return Unavailable
    if status in (401, 403):
        return AuthFailed
    if 400 <= status < 500:
        return Rejected
    return BadReply


def outcome(cls: type[RestError]) -> str:
    """The metric label of an attempt that failed with this class."""
    if issubclass(cls, RateLimited):
        return "rate_limited"
    if issubclass(cls, NetworkError):
        return "network"
    if issubclass(cls, Unavailable):
        return "retryable"
    if issubclass(cls, Rejected):
        return "rejected"
    return "bad_reply"


def classify(code: str) -> str:
    """OKX code -> "ok" | "rate_limited" | "retryable" | "rejected" (pure; by `error_class`)."""
    cls = error_class(code)
    return "ok" if cls is None else outcome(cls)


def retry_delay(attempt: int, rng: Callable[[], float] = random.random) -> float:
    """Delay before REST retry number `attempt` (0-based): okx.backoff's policy with the
    client's bounds (0.5 s doubling to 10 s, equal jitter)."""
    return backoff_delay(attempt, base=BACKOFF_BASE_S, cap=BACKOFF_CAP_S, rng=rng)


def check_envelope(obj: Any, what: str, row_type: type | None = dict) -> list[Any]:
    """The `data` list of a code-"0" envelope, checked; the RestError `error_class` names for
    any other code, BadReply for a reply that is no envelope."""
    if not isinstance(obj, dict):
        raise BadReply(f"{what}: reply must be a JSON object, got {type(obj).__name__}")
    code = obj.get("code")
    if isinstance(code, int) and not isinstance(code, bool):
        code = str(code)
    if not isinstance(code, str):
        raise BadReply(f"{what}: reply has no code")
    err_cls = error_class(code)
    if err_cls is not None:
        msg = obj.get("msg")
        msg = msg[:200] if isinstance(msg, str) else ""
        raise err_cls(f"{what}: OKX {code}: {msg}", code)
    data = obj.get("data")
    if not isinstance(data, list):
        raise BadReply(f"{what}: reply has no data list")
    if row_type is not None:
        for row in data:
            if not isinstance(row, row_type):
                raise BadReply(
                    f"{what}: rows must be {row_type.__name__}s, got {type(row).__name__}"
                )
    return data


class _Body(Protocol):
    """A reply body being read: urlopen's response, or the HTTPError that carries one."""

    def read(self, size: int, /) -> bytes: ...


class RestClient:
    def __init__(
        self,
        base_url: str,
        *,
        credentials: Credentials | None = None,
        demo: bool = False,
        timeout: float = 5.0,
        limits: Limits | None | bool = None,
        max_retries: int = 5,
        sleep: Callable[[float], None] = time.sleep,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._creds = credentials
        self.demo = demo
        self.timeout = timeout
        if limits is None or limits is True:
            limits = process_limits()
        elif limits is False:
            limits = NoLimits()
        self.limits = limits
        self.max_retries = max_retries
        self._sleep = sleep
        self._rng = rng

    def __repr__(self) -> str:
        return f"RestClient({self.base_url!r}, credentials={self._creds!r}, demo={self.demo})"

    def get(
        self,
        path: str,
        params: Mapping[str, str] | None = None,
        signed: bool = False,
        *,
        row_type: type | None = dict,
    ) -> list[Any]:
        """GET path?params and return the `data` list of OKX's envelope (rows checked to be
        `row_type`; pass list for candles, None to skip the check)."""
        if signed and self._creds is None:
            raise AuthFailed(f"GET {path}: a signed request needs API credentials", "50103")
        endpoint = endpoint_of(path)
        what = f"GET {path}"
        attempt = 0
        while True:
            try:
                data = self._attempt(path, params, signed, endpoint, what, row_type)
                REQUESTS.labels(endpoint, "ok").inc()
                return data
            except RestError as exc:
                REQUESTS.labels(endpoint, outcome(type(exc))).inc()
                if isinstance(exc, RateLimited):
                    RATE_LIMITED.labels(endpoint).inc()
                    # everyone in this process holds off this endpoint for a window
                    self.limits.pause(path)
                if not exc.retryable:
                    raise self._scrubbed(exc) from None
                if attempt >= self.max_retries:
                    if isinstance(exc, RateLimited):
                        exc.retry_after = self.limits.paused_for(path) or None
                    raise self._scrubbed(exc) from None
                delay = retry_delay(attempt, self._rng)
                log.warning(
                    "%s; retry %d/%d in %.2fs",
                    self._scrubbed(exc),
                    attempt + 1,
                    self.max_retries,
                    delay,
                )
                self._sleep(delay)
                attempt += 1

    def _scrubbed(self, exc: RestError) -> RestError:
        """The error with any echo of our secret or passphrase blanked out (a hostile or buggy
        server may quote what it was sent)."""
        if self._creds is not None:
            text = str(exc)
            for secret in (self._creds.secret, self._creds.passphrase):
                if secret:
                    text = text.replace(secret, "***")
            exc.args = (text,)
        return exc

    def _attempt(
        self,
        path: str,
        params: Mapping[str, str] | None,
        signed: bool,
        endpoint: str,
        what: str,
        row_type: type | None,
    ) -> list[Any]:
        full = request_path(path, params)
        with self.limits.slot(path) as waited:
            if waited:
                WAIT_SECONDS.labels(endpoint).inc(waited)
            # sign after the wait: OKX rejects a timestamp more than 30 s old
            headers = rest_headers(
                self._creds if signed else None, "GET", full, "", time.time(), self.demo
            )
            status, body = self._send(full, headers, what)
        if status == 429 or status >= 500:
            raise http_error_class(status)(
                f"{what}: HTTP {status}", "50011" if status == 429 else str(status)
            )
        try:
            obj = orjson.loads(body)
        except orjson.JSONDecodeError:
            if status != 200:
                raise http_error_class(status)(f"{what}: HTTP {status}", str(status)) from None
            raise BadReply(f"{what}: HTTP {status}, reply is not JSON") from None
        if status != 200 and not (isinstance(obj, dict) and "code" in obj):
            raise http_error_class(status)(f"{what}: HTTP {status}", str(status))
        return check_envelope(obj, what, row_type)

    def _send(self, full: str, headers: dict[str, str], what: str) -> tuple[int, bytes]:
        """(HTTP status, body); a network failure or timeout is a NetworkError."""
        req = urllib.request.Request(self.base_url + full, headers=headers, method="GET")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return resp.status, self._read(resp, what)
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, self._read(exc, what)
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
            # the reason only (e.g. "timed out", "Connection refused"): never the request
            reason = getattr(exc, "reason", None) or type(exc).__name__
            raise NetworkError(f"{what}: network error: {reason}") from None

    @staticmethod
    def _read(resp: _Body, what: str) -> bytes:
        body = resp.read(MAX_BODY + 1)
        if len(body) > MAX_BODY:
            raise BadReply(f"{what}: reply larger than {MAX_BODY} bytes")
        return body
