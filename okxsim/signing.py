"""Verification of OKX API signatures (WS login and REST headers); written for the simulator."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime
from typing import Any

SKEW_S = 30.0


def sign(secret: str, message: str) -> str:
    return base64.b64encode(
        hmac.new(secret.encode(), message.encode(), hashlib.sha256).digest()
    ).decode()


def check_ws_login(
    arg: dict, key: str, secret: str, passphrase: str, now_s: float
) -> tuple[str, str]:
    """(code, msg) for one login arg; code "0" when accepted."""
    for name in ("apiKey", "passphrase", "timestamp", "sign"):
        if not isinstance(arg.get(name), str) or not arg.get(name):
            return "60012", f"Invalid request: missing {name}"
    ts = arg["timestamp"]
    try:
        ts_f = float(ts)
    except ValueError:
        return "60004", "Invalid timestamp"
    if ts_f > 1e11:  # milliseconds instead of seconds
        return "60004", "Invalid timestamp"
    if abs(ts_f - now_s) > SKEW_S:
        return "60006", "Timestamp request expired"
    if arg["apiKey"] != key:
        return "60005", "Invalid OK-ACCESS-KEY"
    if arg["passphrase"] != passphrase:
        return "60024", "Wrong passphrase"
    expected = sign(secret, ts + "GET" + "/users/self/verify")
    if not hmac.compare_digest(expected, arg["sign"]):
        return "60007", "Invalid sign"
    return "0", ""


def parse_iso_ms(ts: str) -> float | None:
    """'2020-12-08T09:08:57.715Z' -> epoch seconds; None if not that format."""
    if not ts.endswith("Z") or "T" not in ts:
        return None
    try:
        dt = datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ")
    except ValueError:
        return None
    return dt.replace(tzinfo=UTC).timestamp()


def check_rest(
    headers: Any,
    method: str,
    path_qs: str,
    body: str,
    key: str,
    secret: str,
    passphrase: str,
    now_s: float,
) -> tuple[str, str, int]:
    """(code, msg, http status) for a private REST call; code "0" when accepted."""
    k = headers.get("OK-ACCESS-KEY")
    s = headers.get("OK-ACCESS-SIGN")
    t = headers.get("OK-ACCESS-TIMESTAMP")
    p = headers.get("OK-ACCESS-PASSPHRASE")
    if not k:
        return "50103", "Request header OK-ACCESS-KEY cannot be empty.", 401
    if not p:
        return "50105", "Request header OK-ACCESS-PASSPHRASE cannot be empty.", 401
    if not t:
        return "50107", "Request header OK-ACCESS-TIMESTAMP cannot be empty.", 401
    if not s:
        return "50104", "Request header OK-ACCESS-SIGN cannot be empty.", 401
    t_s = parse_iso_ms(t)
    if t_s is None:
        return "50112", "Invalid OK-ACCESS-TIMESTAMP", 401
    if abs(t_s - now_s) > SKEW_S:
        return "50102", "Timestamp request expired", 401
    if k != key:
        return "50111", "Invalid OK-ACCESS-KEY", 401
    if p != passphrase:
        return "50105", "Invalid OK-ACCESS-PASSPHRASE", 401
    if not hmac.compare_digest(sign(secret, t + method.upper() + path_qs + body), s):
        return "50113", "Invalid Sign", 401
    return "0", "", 200
