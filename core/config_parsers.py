"""The one set of parsers behind every setting: text (or a TOML value) in, typed value out.

Pure: this module never reads the environment; core/settings.py does, and hands each raw value
here with the name of the variable it came from. Every failure is a `ConfigError` whose message is
one line, names the variable and never echoes a password (URLs are shown redacted).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from core.errors import ConfigError
from okx.signing import Credentials

__all__ = [
    "CREDENTIAL_VARS",
    "DEFAULT_REDIS_URL",
    "is_blank",
    "parse_bool",
    "parse_credentials",
    "parse_duration",
    "parse_float",
    "parse_int",
    "parse_list",
    "parse_share",
    "parse_str",
    "parse_url",
    "redact_url",
    "web_basic_auth",
    "parse_redis_url",
    "parse_ws_url",
    "parse_http_url",
    "parse_mongo_uri",
    "parse_factory",
]

# One default for every process: the broker, RedBeat, the feeder's ledger and the REST limiter.
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
CREDENTIAL_VARS = ("OKX_API_KEY", "OKX_API_SECRET", "OKX_API_PASSPHRASE")

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
# "250ms", "30", "30s", "5m", "1.5h": a bare number is seconds
_DURATION = re.compile(r"^\s*(?P<n>[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(?P<unit>ms|s|m|h)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def is_blank(value: Any) -> bool:
    """An unset variable and an empty one mean the same: use the default."""
    return value is None or (isinstance(value, str) and value.strip() == "")


def parse_str(name: str, value: Any) -> str:
    return str(value).strip()


def parse_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError(f"{name} must be true or false, got {value!r}")


def parse_int(name: str, value: Any) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    try:
        return int(str(value).strip()) if isinstance(value, str) else int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be an integer, got {value!r}") from None


def parse_float(name: str, value: Any) -> float:
    if isinstance(value, bool):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, got {value!r}") from None


def parse_duration(name: str, value: Any) -> float:
    """Seconds: a number, or a number with a unit (ms, s, m, h)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    m = _DURATION.match(str(value))
    if m is None:
        raise ConfigError(f"{name} must be a number of seconds (or with ms/s/m/h), got {value!r}")
    return float(m.group("n")) * _UNIT_S[m.group("unit")]


def parse_share(name: str, value: Any) -> float:
    """A share of a budget, in (0, 1]."""
    share = parse_float(name, value)
    if not 0 < share <= 1:
        raise ConfigError(f"{name} must be in (0, 1], got {value!r}")
    return share


def parse_list(name: str, value: Any) -> tuple[str, ...]:
    """ "a, b,a" or a TOML list -> ("a", "b"): stripped, de-duplicated, order kept."""
    items = [str(v) for v in value] if isinstance(value, (list, tuple)) else str(value).split(",")
    return tuple(dict.fromkeys(i.strip() for i in items if i.strip()))


def redact_url(url: str) -> str:
    """The URL without its user-info part (where a password would be)."""
    if "@" not in url:
        return url
    if "://" not in url:
        return "***@" + url.rsplit("@", 1)[1]
    scheme, rest = url.split("://", 1)
    return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"


def parse_url(name: str, value: Any, schemes: Iterable[str], *, host_required: bool = True) -> str:
    """A URL with one of `schemes` and (unless `host_required` is False) a host; a valid port."""
    url = str(value).strip()
    allowed = tuple(schemes)
    spelled = " or ".join(f"{s}://" for s in allowed)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise ConfigError(f"{name} is not a valid URL: {redact_url(url)!r}") from None
    if "://" not in url or parts.scheme.lower() not in allowed:
        raise ConfigError(f"{name} must start with {spelled}, got {redact_url(url)!r}")
    if host_required and not parts.hostname:
        raise ConfigError(f"{name} has no host: {redact_url(url)!r}")
    return url


def parse_credentials(key: Any, secret: Any, passphrase: Any) -> Credentials | None:
    """All three OKX credentials, or none; one or two of them is an error naming the others."""
    values = ["" if is_blank(v) else str(v).strip() for v in (key, secret, passphrase)]
    if not any(values):
        return None
    if not all(values):
        missing = [n for n, v in zip(CREDENTIAL_VARS, values) if not v]
        raise ConfigError(f"incomplete OKX credentials: {', '.join(missing)} not set")
    return Credentials(api_key=values[0], secret=values[1], passphrase=values[2])


def web_basic_auth(env: Mapping[str, str]) -> tuple[list[str] | None, str | None]:
    """-> (basic_auth list for Flower or None, error message or None). Pure: env in, values out."""
    user, password = env.get("WEB_USER", ""), env.get("WEB_PASSWORD", "")
    if user or password:
        if not (user and password):
            return None, "web: set both WEB_USER and WEB_PASSWORD (or neither)"
        if ":" in user:
            return None, "web: WEB_USER must not contain ':' (HTTP basic auth splits on it)"
        return [f"{user}:{password}"], None
    if env.get("FLOWER_BASIC_AUTH") or (env.get("FLOWER_AUTH_PROVIDER") and env.get("FLOWER_AUTH")):
        return None, None  # Flower applies its own variables
    if env.get("WEB_NO_AUTH", "").strip().lower() in ("1", "true", "yes"):
        return None, None
    return None, (
        "web: refusing to start Flower without authentication. Set WEB_USER and "
        "WEB_PASSWORD (or FLOWER_BASIC_AUTH=user:password), or WEB_NO_AUTH=1 to run it "
        "open on purpose."
    )


# ----- URL kinds --------------------------------------------------------------------------------
def parse_redis_url(name: str, value: Any) -> str:
    url = parse_url(name, value, ("redis", "rediss", "unix"), host_required=False)
    if not url.lower().startswith("unix://"):
        parse_url(name, url, ("redis", "rediss"))  # a TCP Redis needs a host
    return url


def parse_ws_url(name: str, value: Any) -> str:
    return parse_url(name, value, ("ws", "wss"))


def parse_http_url(name: str, value: Any) -> str:
    return parse_url(name, value, ("http", "https"))


def parse_mongo_uri(name: str, value: Any, *, any_scheme: bool = False) -> str:
    """mongodb:// or mongodb+srv:// (several hosts allowed, so no port check); any scheme with a
    host when a MONGO_CLIENT_FACTORY is configured, since that factory decides what it accepts."""
    uri = str(value).strip()
    scheme, sep, rest = uri.partition("://")
    if not sep or not scheme:
        raise ConfigError(f"{name} is not a URI: {redact_url(uri)!r}")
    if not any_scheme and scheme.lower() not in ("mongodb", "mongodb+srv"):
        raise ConfigError(
            f"{name} must start with mongodb:// or mongodb+srv://, got {redact_url(uri)!r}"
        )
    if not rest.rsplit("@", 1)[-1].split("/", 1)[0]:
        raise ConfigError(f"{name} has no host: {redact_url(uri)!r}")
    return uri


def parse_factory(name: str, value: Any) -> str:
    """ "package.module:callable" (only checked for form here; resolved by its user)."""
    text = str(value).strip()
    module, sep, attr = text.partition(":")
    if not sep or not module or not attr.isidentifier():
        raise ConfigError(f"{name} must be 'package.module:callable', got {text!r}")
    return text
