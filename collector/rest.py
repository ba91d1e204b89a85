"""A thin OKX REST client (stdlib urllib): moves bytes, checks the envelope, nothing else.
The feeder uses GET /api/v5/market/books to bootstrap a book; backfill will extend this module.
"""
from __future__ import annotations

import time
import urllib.error
import urllib.request

import orjson

from .signing import Credentials, request_path, rest_headers


class RestError(RuntimeError):
    """An HTTP or OKX-level error; `code` is OKX's code (or the HTTP status) when known."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class RateLimited(RestError):
    """OKX 50011 / HTTP 429."""


class RestClient:
    def __init__(self, base_url: str, *, credentials: Credentials | None = None,
                 demo: bool = False, timeout: float = 3.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._creds = credentials
        self.demo = demo
        self.timeout = timeout

    def get(self, path: str, params: dict | None = None, signed: bool = False) -> list:
        """GET path?params and return the `data` list of OKX's envelope."""
        full = request_path(path, params)
        headers = rest_headers(self._creds if signed else None, "GET", full, "", time.time(),
                               self.demo)
        req = urllib.request.Request(self.base_url + full, headers=headers, method="GET")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                body = resp.read()
        except urllib.error.HTTPError as exc:
            body = exc.read()
            if exc.code == 429:
                raise RateLimited(f"GET {path}: HTTP 429", "50011") from None
            if not body:
                raise RestError(f"GET {path}: HTTP {exc.code}", str(exc.code)) from None
        except (urllib.error.URLError, OSError) as exc:
            raise RestError(f"GET {path}: {exc}") from None
        try:
            obj = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise RestError(f"GET {path}: response is not JSON") from None
        code = str(obj.get("code", "")) if isinstance(obj, dict) else ""
        if code != "0":
            msg = obj.get("msg", "") if isinstance(obj, dict) else ""
            cls = RateLimited if code == "50011" else RestError
            raise cls(f"GET {path}: OKX {code}: {msg}", code)
        data = obj.get("data")
        if not isinstance(data, list):
            raise RestError(f"GET {path}: no data list")
        return data

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
