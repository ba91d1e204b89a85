"""The OKX v5 REST client: paced, signed, retried, and suspicious of every reply.

The feeder uses it for REST book snapshots (`books`); backfill and audit page history through it
(okx/rest/endpoints.py). One GET:

    pace (okx.rest.ratelimit: per-endpoint sliding windows, shared through Redis by every
          process when REDIS_URL is set, else by the whole process)
    -> sign (private paths; the demo header when demo) -> send (stdlib urllib)
    -> check the envelope: {"code": "0", "data": [...]}, rows of the expected type
    -> on a transient failure (network error, timeout, HTTP 5xx, OKX busy codes, 50011 / 429)
       back off with capped, jittered exponential delays and try again, up to max_retries;
       on a failure retrying cannot fix (bad parameters 51xxx, authentication 501xx, ...) raise
       at once.

Errors carry OKX's code and a message naming the path, never a header, a secret or the signed
query. Every attempt is counted (module-level prometheus counters, so a worker's /metrics shows
them).
"""
from __future__ import annotations

import http.client
import logging
import random
import time
import urllib.error
import urllib.request
from typing import Any, Callable

import orjson
from prometheus_client import Counter

from okx.rest.ratelimit import Limits, NoLimits, endpoint_of, process_limits
from okx.signing import Credentials, request_path, rest_headers

log = logging.getLogger(__name__)

REQUESTS = Counter("okx_rest_requests", "OKX REST attempts by endpoint and outcome "
                   "(ok, rate_limited, retryable, rejected, bad_reply, network)",
                   ["endpoint", "outcome"])
WAIT_SECONDS = Counter("okx_rest_wait_seconds", "Seconds spent waiting for a rate-limit slot",
                       ["endpoint"])
RATE_LIMITED = Counter("okx_rest_rate_limited", "Replies 50011 / HTTP 429 from OKX", ["endpoint"])

MAX_BODY = 32 * 1024 * 1024   # a 5000-level books-full reply is ~0.5 MB; more is not OKX
BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 10.0
RATE_LIMIT_CODES = frozenset({"50011", "50061"})  # 50061: the sub-account's overall limit
# OKX's "try again later" family: service unavailable, endpoint timeout, system busy/error
RETRYABLE_CODES = frozenset({"50001", "50004", "50013", "50026"})


class RestError(RuntimeError):
    """An HTTP or OKX-level error; `code` is OKX's code (or the HTTP status) when known."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class RateLimited(RestError):
    """OKX 50011 / HTTP 429, still there after every retry."""


class _Retry(Exception):
    """Internal: this attempt failed in a way a later attempt may not."""

    def __init__(self, error: RestError, outcome: str) -> None:
        super().__init__(str(error))
        self.error, self.outcome = error, outcome


def classify(code: str) -> str:
    """OKX code -> "ok" | "rate_limited" | "retryable" | "rejected" (pure)."""
    if code == "0":
        return "ok"
    if code in RATE_LIMIT_CODES:
        return "rate_limited"
    if code in RETRYABLE_CODES:
        return "retryable"
    return "rejected"   # 51xxx parameters, 501xx authentication, and anything unknown


def backoff_delay(attempt: int, rng: Callable[[], float] = random.random,
                  base: float = BACKOFF_BASE_S, cap: float = BACKOFF_CAP_S) -> float:
    """Delay before retry number `attempt` (0-based): capped exponential with jitter in its upper
    half, so retries spread out but never collapse to zero."""
    full = min(cap, base * (2 ** attempt))
    return full * (0.5 + 0.5 * rng())


def check_envelope(obj: Any, what: str, row_type: type | None = dict) -> list:
    """The `data` list of a code-"0" envelope, checked; RestError (or _Retry) otherwise."""
    if not isinstance(obj, dict):
        raise RestError(f"{what}: reply must be a JSON object, got {type(obj).__name__}")
    code = obj.get("code")
    if isinstance(code, int) and not isinstance(code, bool):
        code = str(code)
    if not isinstance(code, str):
        raise RestError(f"{what}: reply has no code")
    kind = classify(code)
    if kind != "ok":
        msg = obj.get("msg")
        msg = msg[:200] if isinstance(msg, str) else ""
        err_cls = RateLimited if kind == "rate_limited" else RestError
        error = err_cls(f"{what}: OKX {code}: {msg}", code)
        if kind == "rejected":
            raise error
        raise _Retry(error, kind)
    data = obj.get("data")
    if not isinstance(data, list):
        raise RestError(f"{what}: reply has no data list")
    if row_type is not None:
        for row in data:
            if not isinstance(row, row_type):
                raise RestError(f"{what}: rows must be {row_type.__name__}s, "
                                f"got {type(row).__name__}")
    return data


class RestClient:
    def __init__(self, base_url: str, *, credentials: Credentials | None = None,
                 demo: bool = False, timeout: float = 5.0,
                 limits: Limits | None | bool = None,
                 max_retries: int = 5,
                 sleep: Callable[[float], None] = time.sleep,
                 rng: Callable[[], float] = random.random) -> None:
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

    def get(self, path: str, params: dict | None = None, signed: bool = False, *,
            row_type: type | None = dict) -> list:
        """GET path?params and return the `data` list of OKX's envelope (rows checked to be
        `row_type`; pass list for candles, None to skip the check)."""
        if signed and self._creds is None:
            raise RestError(f"GET {path}: a signed request needs API credentials", "50103")
        endpoint = endpoint_of(path)
        what = f"GET {path}"
        attempt = 0
        while True:
            try:
                data = self._attempt(path, params, signed, endpoint, what, row_type)
                REQUESTS.labels(endpoint, "ok").inc()
                return data
            except _Retry as retry:
                REQUESTS.labels(endpoint, retry.outcome).inc()
                if retry.outcome == "rate_limited":
                    RATE_LIMITED.labels(endpoint).inc()
                    # everyone in this process holds off this endpoint for a window
                    self.limits.pause(path)
                if attempt >= self.max_retries:
                    raise self._scrubbed(retry.error) from None
                delay = backoff_delay(attempt, self._rng)
                log.warning("%s; retry %d/%d in %.2fs", self._scrubbed(retry.error),
                            attempt + 1, self.max_retries, delay)
                self._sleep(delay)
                attempt += 1
            except RestError as exc:
                REQUESTS.labels(endpoint, "rejected" if exc.code else "bad_reply").inc()
                raise self._scrubbed(exc) from None

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

    def _attempt(self, path: str, params: dict | None, signed: bool, endpoint: str, what: str,
                 row_type: type | None) -> list:
        full = request_path(path, params)
        with self.limits.slot(path) as waited:
            if waited:
                WAIT_SECONDS.labels(endpoint).inc(waited)
            # sign after the wait: OKX rejects a timestamp more than 30 s old
            headers = rest_headers(self._creds if signed else None, "GET", full, "", time.time(),
                                   self.demo)
            status, body = self._send(full, headers, what)
        if status == 429:
            raise _Retry(RateLimited(f"{what}: HTTP 429", "50011"), "rate_limited")
        if status >= 500:
            raise _Retry(RestError(f"{what}: HTTP {status}", str(status)), "retryable")
        try:
            obj = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise RestError(f"{what}: HTTP {status}, reply is not JSON") from None
        if status != 200 and not (isinstance(obj, dict) and "code" in obj):
            raise RestError(f"{what}: HTTP {status}", str(status))
        return check_envelope(obj, what, row_type)

    def _send(self, full: str, headers: dict[str, str], what: str) -> tuple[int, bytes]:
        """(HTTP status, body); a network failure or timeout is a _Retry."""
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
            raise _Retry(RestError(f"{what}: network error: {reason}"), "network") from None

    @staticmethod
    def _read(resp: Any, what: str) -> bytes:
        body = resp.read(MAX_BODY + 1)
        if len(body) > MAX_BODY:
            raise RestError(f"{what}: reply larger than {MAX_BODY} bytes")
        return body

    def books(self, inst_id: str, sz: int = 400) -> dict:
        """The current book: {asks, bids, ts (int ms), seqId (int)}."""
        data = self.get("/api/v5/market/books", {"instId": inst_id, "sz": sz})
        if not data or not isinstance(data[0], dict):
            raise RestError(f"books {inst_id}: empty response")
        row = data[0]
        try:
            return {"asks": row["asks"], "bids": row["bids"], "ts": int(row["ts"]),
                    "seqId": int(row["seqId"])}
        except (KeyError, TypeError, ValueError) as exc:
            raise RestError(f"books {inst_id}: bad snapshot ({exc})") from None
