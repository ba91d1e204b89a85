"""Feeder settings: a frozen object read from the environment (and optionally a TOML file) in one
place, validated before anything connects. Nothing else in collector/ reads os.environ.

Precedence: environment variable > TOML file (OKX_CONFIG or --config) > default. The TOML file uses
the same names in lower case without the prefix, e.g. `instruments = ["BTC-USDT"]`,
`ws_url = "..."`.
"""
from __future__ import annotations

import os
import socket
import tomllib
from dataclasses import dataclass, field, fields
from typing import Any, Mapping

from core.errors import ConfigError
from okx.channels import endpoint_for, needs_login
from okx.signing import Credentials

PROD_WS_URL = "wss://ws.okx.com"        # port-less: :8443 closed on 2026-10-31
DEMO_WS_URL = "wss://wspap.okx.com"
PROD_REST_URL = "https://openapi.okx.com"

DEFAULT_PUBLIC_CHANNELS = ("books", "books5", "trades-all", "tickers", "candle1m")
DEFAULT_PRIVATE_CHANNELS = ("orders", "balance_and_position", "positions", "account")
DEFAULT_INSTRUMENTS = ("BTC-USDT", "ETH-USDT")


@dataclass(frozen=True)
class Settings:
    redis_url: str = "redis://127.0.0.1:6379/0"
    ws_url: str = PROD_WS_URL
    rest_url: str = PROD_REST_URL
    instruments: tuple[str, ...] = DEFAULT_INSTRUMENTS
    channels: tuple[str, ...] = DEFAULT_PUBLIC_CHANNELS
    credentials: Credentials | None = field(default=None, repr=False)
    demo: bool = False
    feeder_id: str = ""
    health_host: str = "127.0.0.1"
    health_port: int = 8081            # 0 = no health server
    ping_after_s: float = 20.0         # OKX: ping whenever nothing arrived for N < 30 s
    pong_timeout_s: float = 10.0
    stale_after_s: float = 60.0        # a subscription silent this long is resubscribed
    healthy_after_s: float = 5.0       # a connection live this long resets the reconnect backoff
    batch_max: int = 500               # records per task at most
    buffer_max: int = 200_000          # records held while the broker is down, then gaps
    linger_max_ms: float = 20.0        # longest wait for a batch to fill when workers lag
    book_depth_stored: int = 25        # top-N levels published for books state/history
    full_book_every_s: float = 60.0    # periodic full-book snapshot to history (0 = never)
    record_path: str | None = None     # --record FILE

    @property
    def private_channels(self) -> tuple[str, ...]:
        return tuple(c for c in self.channels if endpoint_for(c) == "private")


_ENV = {
    "redis_url": "REDIS_URL", "ws_url": "OKX_WS_URL", "rest_url": "OKX_REST_URL",
    "instruments": "OKX_INSTRUMENTS", "channels": "OKX_CHANNELS", "demo": "OKX_DEMO",
    "feeder_id": "FEEDER_ID", "health_host": "FEEDER_HEALTH_HOST",
    "health_port": "FEEDER_HEALTH_PORT", "ping_after_s": "OKX_PING_AFTER",
    "pong_timeout_s": "OKX_PONG_TIMEOUT", "stale_after_s": "FEEDER_STALE_AFTER",
    "healthy_after_s": "FEEDER_HEALTHY_AFTER",
    "batch_max": "FEEDER_BATCH_MAX", "buffer_max": "FEEDER_BUFFER_MAX",
    "linger_max_ms": "FEEDER_LINGER_MAX_MS",
    "book_depth_stored": "FEEDER_BOOK_DEPTH", "full_book_every_s": "FEEDER_FULL_BOOK_EVERY",
    "record_path": "FEEDER_RECORD",
}
_SECRET_ENV = ("OKX_API_KEY", "OKX_API_SECRET", "OKX_API_PASSPHRASE")


def _as_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{name} must be true or false, got {value!r}")


def _as_list(value: Any) -> tuple[str, ...]:
    if isinstance(value, (list, tuple)):
        items = [str(v) for v in value]
    else:
        items = str(value).split(",")
    return tuple(dict.fromkeys(i.strip() for i in items if i.strip()))


def _convert(name: str, value: Any, default: Any) -> Any:
    label = _ENV.get(name, name)
    if isinstance(default, bool):
        return _as_bool(label, value)
    if isinstance(default, tuple):
        return _as_list(value)
    try:
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{label} must be a number, got {value!r}") from None
    return None if value in ("", None) else str(value)


def load(env: Mapping[str, str] | None = None, config_path: str | None = None,
         **overrides: Any) -> Settings:
    """Build and validate Settings. `overrides` (from the command line) win over everything."""
    env = os.environ if env is None else env
    from_file: dict[str, Any] = {}
    path = config_path or env.get("OKX_CONFIG")
    if path:
        try:
            with open(path, "rb") as fh:
                from_file = tomllib.load(fh)
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path!r}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path!r} is not valid TOML: {exc}") from None
        unknown = set(from_file) - set(_ENV) - {"api_key", "api_secret", "api_passphrase"}
        if unknown:
            raise ConfigError(f"unknown settings in {path!r}: {', '.join(sorted(unknown))}")

    defaults = Settings()
    values: dict[str, Any] = {}
    for f in fields(Settings):
        if f.name == "credentials":
            continue
        default = getattr(defaults, f.name)
        if f.name in overrides and overrides[f.name] is not None:
            raw = overrides[f.name]
        elif _ENV.get(f.name) in env:
            raw = env[_ENV[f.name]]
        elif f.name in from_file:
            raw = from_file[f.name]
        else:
            continue
        values[f.name] = _convert(f.name, raw, default)

    creds = _credentials(env, from_file)
    demo = values.get("demo", False)
    if "ws_url" not in values and demo:
        values["ws_url"] = DEMO_WS_URL
    if "channels" not in values and creds is not None:
        values["channels"] = DEFAULT_PUBLIC_CHANNELS + DEFAULT_PRIVATE_CHANNELS
    if not values.get("feeder_id"):
        values["feeder_id"] = f"feeder-{socket.gethostname()}"
    settings = Settings(credentials=creds, **values)
    validate(settings)
    return settings


def _credentials(env: Mapping[str, str], from_file: dict[str, Any]) -> Credentials | None:
    key = env.get("OKX_API_KEY") or from_file.get("api_key") or ""
    secret = env.get("OKX_API_SECRET") or from_file.get("api_secret") or ""
    passphrase = env.get("OKX_API_PASSPHRASE") or from_file.get("api_passphrase") or ""
    given = [bool(key), bool(secret), bool(passphrase)]
    if not any(given):
        return None
    if not all(given):
        missing = [n for n, ok in zip(_SECRET_ENV, given) if not ok]
        raise ConfigError(f"incomplete OKX credentials: {', '.join(missing)} not set")
    return Credentials(api_key=key, secret=secret, passphrase=passphrase)


def validate(s: Settings) -> None:
    if not s.instruments:
        raise ConfigError("OKX_INSTRUMENTS is empty")
    if not s.channels:
        raise ConfigError("OKX_CHANNELS is empty")
    for channel in s.channels:
        try:
            endpoint_for(channel)
        except ValueError as exc:
            raise ConfigError(f"OKX_CHANNELS: {exc}") from None
        if needs_login(channel) and s.credentials is None:
            raise ConfigError(
                f"channel {channel!r} needs a login: set OKX_API_KEY, OKX_API_SECRET and "
                "OKX_API_PASSPHRASE, or remove it from OKX_CHANNELS")
    if not s.ws_url.startswith(("ws://", "wss://")):
        raise ConfigError(f"OKX_WS_URL must start with ws:// or wss://, got {s.ws_url!r}")
    if "/ws/v5" in s.ws_url:
        raise ConfigError("OKX_WS_URL is the base URL only; the feeder appends /ws/v5/<endpoint>")
    if not s.rest_url.startswith(("http://", "https://")):
        raise ConfigError(f"OKX_REST_URL must start with http:// or https://, got {s.rest_url!r}")
    if not 0 < s.ping_after_s < 30:
        raise ConfigError("OKX_PING_AFTER must be between 0 and 30 seconds (OKX drops a silent "
                          "connection after 30 s)")
    if s.pong_timeout_s <= 0:
        raise ConfigError("OKX_PONG_TIMEOUT must be positive")
    if s.healthy_after_s <= 0:
        raise ConfigError("FEEDER_HEALTHY_AFTER must be positive")
    if s.batch_max < 1 or s.buffer_max < s.batch_max:
        raise ConfigError("FEEDER_BATCH_MAX must be >= 1 and FEEDER_BUFFER_MAX >= FEEDER_BATCH_MAX")
    if not 0 <= s.linger_max_ms <= 1000:
        raise ConfigError("FEEDER_LINGER_MAX_MS must be between 0 and 1000")
    if not 1 <= s.book_depth_stored <= 400:
        raise ConfigError("FEEDER_BOOK_DEPTH must be between 1 and 400")
    if {"books", "books-l2-tbt"} <= set(s.channels) or {"books50-l2-tbt", "books-l2-tbt"} <= set(s.channels):
        raise ConfigError("books-l2-tbt cannot share a connection with books/books50-l2-tbt for "
                          "the same instrument (OKX error 64004); choose one")
