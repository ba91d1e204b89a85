"""OKX v5 request signing, for the WebSocket login and private REST. Pure: the clock is injected.

WebSocket login: timestamp = Unix seconds as a string; sign = Base64(HMAC-SHA256(secret,
timestamp + "GET" + "/users/self/verify")). REST: timestamp = ISO-8601 UTC with milliseconds;
sign = Base64(HMAC-SHA256(secret, timestamp + METHOD + requestPath(+query) + body)).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlencode

import orjson


@dataclass(frozen=True)
class Credentials:
    """API key, secret and passphrase. Its repr never shows the secret or the passphrase."""

    api_key: str
    secret: str = field(repr=False)
    passphrase: str = field(repr=False)

    def __repr__(self) -> str:  # also hides most of the key: logs name the key, not reveal it
        return f"Credentials(api_key={mask(self.api_key)!r})"

    __str__ = __repr__


def mask(value: str) -> str:
    """Enough of a key to recognise it in a log, never enough to use it."""
    return value[:4] + "…" if len(value) > 8 else "…"


def _sign(secret: str, message: str) -> str:
    digest = hmac.new(secret.encode(), message.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def ws_login_message(creds: Credentials, now_s: float) -> str:
    """The `login` op for a WebSocket connection. Build it anew for every (re)login: it expires
    30 s after its timestamp."""
    timestamp = str(int(now_s))
    sign = _sign(creds.secret, timestamp + "GET" + "/users/self/verify")
    return orjson.dumps(
        {
            "op": "login",
            "args": [
                {
                    "apiKey": creds.api_key,
                    "passphrase": creds.passphrase,
                    "timestamp": timestamp,
                    "sign": sign,
                }
            ],
        }
    ).decode()


def iso_ms(now_s: float) -> str:
    """2020-12-08T09:08:57.715Z"""
    moment = datetime.fromtimestamp(now_s, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def request_path(path: str, params: Mapping[str, str | None] | None) -> str:
    """The path OKX signs for a GET: the query string is part of it (None values left out)."""
    if not params:
        return path
    return path + "?" + urlencode([(k, v) for k, v in params.items() if v is not None])


def rest_headers(
    creds: Credentials | None,
    method: str,
    path_with_query: str,
    body: str,
    now_s: float,
    demo: bool = False,
) -> dict[str, str]:
    """Headers for one REST request. Public requests (creds None) carry only the demo flag."""
    headers = {"Content-Type": "application/json"}
    if demo:
        headers["x-simulated-trading"] = "1"
    if creds is not None:
        timestamp = iso_ms(now_s)
        headers.update(
            {
                "OK-ACCESS-KEY": creds.api_key,
                "OK-ACCESS-SIGN": _sign(
                    creds.secret, timestamp + method.upper() + path_with_query + body
                ),
                "OK-ACCESS-TIMESTAMP": timestamp,
                "OK-ACCESS-PASSPHRASE": creds.passphrase,
            }
        )
    return headers
