"""Every setting of every process, and the one module that reads the environment.

    FeederSettings  `load()`: environment > TOML file (OKX_CONFIG or --config) > default; the
                    TOML file uses the field names, e.g. `instruments = ["BTC-USDT"]`.
    WorkerSettings  `WorkerSettings.from_env()`, or `current()` (read once per process; tests
                    install their own with `use(...)`): workers, beat, the backfill and migrate
                    commands, celeryconfig.py.
    LogSettings     `load_logging()`: LOG_LEVEL, LOG_FORMAT and the secrets to redact.
    WebSettings     `load_web()`: the `web` process: read API, Flower (flowerconfig.py).

Each field names its variable next to its default (`setting("VAR", default)`); the text is parsed
by core/config_parsers.py, one parser per kind of value, and every bad value is a `ConfigError`
with a one-line message naming the variable. Nothing else in okx/, core/, collector/ or tasks/
reads os.environ: values flow from here as arguments (tests/test_layout_env.py checks it).

Over 400 lines: it is one table of every setting, kept in one place on purpose (the one reader
of the environment); splitting it would give settings two homes.
"""

from __future__ import annotations

import os
import socket
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from core.config_parsers import (
    DEFAULT_REDIS_URL,
    is_blank,
    parse_bool,
    parse_credentials,
    parse_duration,
    parse_factory,
    parse_http_url,
    parse_int,
    parse_list,
    parse_mongo_uri,
    parse_redis_url,
    parse_share,
    parse_str,
    parse_ws_url,
    redact_url,
    web_basic_auth,
)
from core.errors import ConfigError
from okx.channels import endpoint_for, needs_login
from okx.rest.ratelimit import DEFAULT_RATE_FACTOR, FALLBACK_SHARE
from okx.signing import Credentials
from okx.ws import session

__all__ = [
    "ConfigError",
    "FeederSettings",
    "LogSettings",
    "WebSettings",
    "WorkerSettings",
    "current",
    "load",
    "load_logging",
    "load_web",
    "replace",
    "use",
    "validate",
]

PROD_WS_URL = "wss://ws.okx.com"  # port-less: :8443 closed on 2026-10-31
DEMO_WS_URL = "wss://wspap.okx.com"
PROD_REST_URL = "https://openapi.okx.com"

DEFAULT_PUBLIC_CHANNELS = ("books", "books5", "trades-all", "tickers", "candle1m")
DEFAULT_PRIVATE_CHANNELS = ("orders", "balance_and_position", "positions", "account")
DEFAULT_INSTRUMENTS = ("BTC-USDT", "ETH-USDT")

# ----- the feeder's heartbeat (feeder:<id> in Redis; its TTL: core.keys.HEARTBEAT_TTL_S) ---
HEARTBEAT_EVERY_S = 5.0  # the feeder writes its heartbeat this often
HEARTBEAT_LATE_S = 3 * HEARTBEAT_EVERY_S  # `collector status`: three beats missed = late
FEEDER_DEAD_S = 6 * HEARTBEAT_EVERY_S  # backfill sweep: older than this = a dead feeder


# ----- declaring and reading fields -------------------------------------------------------------
_BY_TYPE: dict[type, Callable[[str, Any], Any]] = {
    bool: parse_bool,
    int: parse_int,
    float: parse_duration,
    tuple: parse_list,
    str: parse_str,
}


def setting(env: str, default: Any, parse: Callable[[str, Any], Any] | None = None) -> Any:
    """A field read from variable `env` (parsed by `parse`, or by the parser for its default's
    type); blank or unset = `default`."""
    return field(default=default, metadata={"env": env, "parse": parse})


def _parser(f: Any, default: Any) -> Callable[[str, Any], Any]:
    return f.metadata.get("parse") or _BY_TYPE.get(type(default), parse_str)


def _read(cls: type, sources: list[tuple[Mapping[str, Any], bool]]) -> dict[str, Any]:
    """The fields of `cls` found in `sources` (first wins): (mapping, keyed by variable name?)."""
    values: dict[str, Any] = {}
    for f in fields(cls):
        env = f.metadata.get("env")
        if env is None:
            continue
        for mapping, by_env in sources:
            raw = mapping.get(env if by_env else f.name)
            if not is_blank(raw):
                values[f.name] = _parser(f, f.default)(env, raw)
                break
    return values


def _redacted_repr(obj: Any) -> str:
    """Never print a credential, or a password embedded in a URL."""
    shown = {f.name: getattr(obj, f.name) for f in fields(obj)}
    if "credentials" in shown:
        shown["credentials"] = "set" if shown["credentials"] is not None else None
    for name in ("redis_url", "state_redis_url", "mongodb_uri"):
        if isinstance(shown.get(name), str):
            shown[name] = redact_url(shown[name])
    return type(obj).__name__ + "(" + ", ".join(f"{k}={v!r}" for k, v in shown.items()) + ")"


def _environ(env: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if env is None else env


def _credentials(*sources: Mapping[str, Any]) -> Credentials | None:
    names = (
        ("OKX_API_KEY", "api_key"),
        ("OKX_API_SECRET", "api_secret"),
        ("OKX_API_PASSPHRASE", "api_passphrase"),
    )
    picked = []
    for env_name, file_name in names:
        found = [s.get(env_name) or s.get(file_name) for s in sources]
        picked.append(next((v for v in found if not is_blank(v)), ""))
    return parse_credentials(*picked)


# ----- the feeder --------------------------------------------------------------------------------
@dataclass(frozen=True, repr=False)
class FeederSettings:
    redis_url: str = setting("REDIS_URL", DEFAULT_REDIS_URL, parse_redis_url)
    ws_url: str = setting("OKX_WS_URL", PROD_WS_URL, parse_ws_url)
    rest_url: str = setting("OKX_REST_URL", PROD_REST_URL, parse_http_url)
    instruments: tuple[str, ...] = setting("OKX_INSTRUMENTS", DEFAULT_INSTRUMENTS)
    channels: tuple[str, ...] = setting("OKX_CHANNELS", DEFAULT_PUBLIC_CHANNELS)
    credentials: Credentials | None = None  # OKX_API_KEY/_SECRET/_PASSPHRASE (or api_* in TOML)
    demo: bool = setting("OKX_DEMO", False)
    feeder_id: str = setting("FEEDER_ID", "")  # "" = feeder-<hostname>; unique per feeder
    # the redundant feeders of one set of instruments share a shard name (docs/redundancy.md)
    shard: str = setting("FEEDER_SHARD", "default")
    # a live heartbeat holding FEEDER_ID: wait this long for it to stop, then refuse to start
    id_wait_s: float = setting("FEEDER_ID_WAIT", 20.0)
    health_host: str = setting("FEEDER_HEALTH_HOST", "127.0.0.1")
    health_port: int = setting("FEEDER_HEALTH_PORT", 8081)  # 0 = no health server
    ping_after_s: float = setting("OKX_PING_AFTER", session.PING_AFTER_S)
    pong_timeout_s: float = setting("OKX_PONG_TIMEOUT", session.PONG_TIMEOUT_S)
    stale_after_s: float = setting("FEEDER_STALE_AFTER", session.STALE_AFTER_S)
    healthy_after_s: float = setting("FEEDER_HEALTHY_AFTER", session.HEALTHY_AFTER_S)
    batch_max: int = setting("FEEDER_BATCH_MAX", 500)  # records per task at most
    buffer_max: int = setting("FEEDER_BUFFER_MAX", 200_000)  # held while the broker is down
    linger_max_ms: float = setting("FEEDER_LINGER_MAX_MS", 20.0)  # longest wait for a batch
    # while another feeder of the shard is live, records it already pushed are left out at
    # publish (collector/claims.py); the claims live this long (s); 0 = never claim
    claim_ttl_s: float = setting("FEEDER_CLAIM_TTL", 10.0)
    # ... and the feeders of a shard but its leader (the smallest live FEEDER_ID) publish this
    # much later, so that their copies are left out instead of becoming tasks (ms)
    standby_delay_ms: float = setting("FEEDER_STANDBY_DELAY_MS", 100.0)
    book_depth_stored: int = setting("FEEDER_BOOK_DEPTH", 25)  # top-N levels published
    full_book_every_s: float = setting("FEEDER_FULL_BOOK_EVERY", 60.0)  # 0 = never
    record_path: str | None = setting("FEEDER_RECORD", None)  # --record FILE
    # OKX_BOOK_PURE=1: the pure-Python book loop instead of okx/_bookaccel.c (the CLI applies it)
    book_pure: bool = setting("OKX_BOOK_PURE", False)
    # the share of OKX's REST limits the whole deployment uses; each process's share without Redis
    rest_rate_factor: float = setting("OKX_REST_RATE_FACTOR", DEFAULT_RATE_FACTOR, parse_share)
    rest_fallback_share: float = setting("OKX_REST_FALLBACK_SHARE", FALLBACK_SHARE, parse_share)
    # /healthz 503 (and `collector status` DEGRADED) when a connection is not live this long
    unhealthy_after_s: float = setting("FEEDER_UNHEALTHY_AFTER", 5.0)
    # ... or when more parse errors than this arrived over the last minute
    parse_errors_per_min: int = setting("FEEDER_PARSE_ERRORS_PER_MIN", 60)
    parse_error_share: float = setting("FEEDER_PARSE_ERROR_SHARE", 0.5, parse_share)

    @property
    def private_channels(self) -> tuple[str, ...]:
        return tuple(c for c in self.channels if endpoint_for(c) == "private")

    __repr__ = _redacted_repr


_FILE_ONLY = {"api_key", "api_secret", "api_passphrase"}


def _read_toml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            from_file = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path!r}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path!r} is not valid TOML: {exc}") from None
    known = {f.name for f in fields(FeederSettings) if "env" in f.metadata} | _FILE_ONLY
    unknown = set(from_file) - known
    if unknown:
        raise ConfigError(f"unknown settings in {path!r}: {', '.join(sorted(unknown))}")
    return from_file


def load(
    env: Mapping[str, str] | None = None, config_path: str | None = None, **overrides: Any
) -> FeederSettings:
    """Build and validate the feeder's settings. `overrides` (the command line) win over all."""
    env = _environ(env)
    path = config_path or env.get("OKX_CONFIG")
    from_file = _read_toml(path) if path else {}
    given = {k: v for k, v in overrides.items() if v is not None}
    values = _read(FeederSettings, [(given, False), (env, True), (from_file, False)])
    creds = _credentials(env, from_file)
    if "ws_url" not in values and values.get("demo", False):
        values["ws_url"] = DEMO_WS_URL
    if "channels" not in values and creds is not None:
        values["channels"] = DEFAULT_PUBLIC_CHANNELS + DEFAULT_PRIVATE_CHANNELS
    if not values.get("feeder_id"):
        values["feeder_id"] = f"feeder-{socket.gethostname()}"
    settings = FeederSettings(credentials=creds, **values)
    validate(settings)
    return settings


def validate(s: FeederSettings) -> None:
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
                "OKX_API_PASSPHRASE, or remove it from OKX_CHANNELS"
            )
    parse_redis_url("REDIS_URL", s.redis_url)
    if not s.shard or any(c in s.shard for c in ":| \t"):
        raise ConfigError("FEEDER_SHARD must be a non-empty name without ':', '|' or spaces")
    if "|" in s.feeder_id:
        raise ConfigError("FEEDER_ID must not contain '|'")
    if s.id_wait_s < 0:
        raise ConfigError("FEEDER_ID_WAIT must not be negative")
    parse_ws_url("OKX_WS_URL", s.ws_url)
    if "/ws/v5" in s.ws_url:
        raise ConfigError("OKX_WS_URL is the base URL only; the feeder appends /ws/v5/<endpoint>")
    parse_http_url("OKX_REST_URL", s.rest_url)
    idle = session.OKX_IDLE_CUTOFF_S
    if not 0 < s.ping_after_s < idle:
        raise ConfigError(
            f"OKX_PING_AFTER must be between 0 and {idle:g} seconds (OKX drops a "
            f"silent connection after {idle:g} s)"
        )
    if s.pong_timeout_s <= 0:
        raise ConfigError("OKX_PONG_TIMEOUT must be positive")
    if s.healthy_after_s <= 0:
        raise ConfigError("FEEDER_HEALTHY_AFTER must be positive")
    if s.batch_max < 1 or s.buffer_max < s.batch_max:
        raise ConfigError("FEEDER_BATCH_MAX must be >= 1 and FEEDER_BUFFER_MAX >= FEEDER_BATCH_MAX")
    if not 0 <= s.linger_max_ms <= 1000:
        raise ConfigError("FEEDER_LINGER_MAX_MS must be between 0 and 1000")
    if not 0 <= s.claim_ttl_s <= 3600:
        raise ConfigError("FEEDER_CLAIM_TTL must be between 0 and 3600 seconds")
    if not 0 <= s.standby_delay_ms <= 5000 or s.standby_delay_ms >= s.claim_ttl_s * 1000 > 0:
        raise ConfigError(
            "FEEDER_STANDBY_DELAY_MS must be between 0 and 5000, and shorter than FEEDER_CLAIM_TTL"
        )
    if not 1 <= s.book_depth_stored <= 400:
        raise ConfigError("FEEDER_BOOK_DEPTH must be between 1 and 400")
    chans = set(s.channels)
    if {"books", "books-l2-tbt"} <= chans or {"books50-l2-tbt", "books-l2-tbt"} <= chans:
        raise ConfigError(
            "books-l2-tbt cannot share a connection with books/books50-l2-tbt for "
            "the same instrument (OKX error 64004); choose one"
        )


# ----- workers and beat ---------------------------------------------------------------------------
@dataclass(frozen=True, repr=False)
class WorkerSettings:
    # --- connections -------------------------------------------------------------------------
    redis_url: str = setting("REDIS_URL", DEFAULT_REDIS_URL, parse_redis_url)  # broker, RedBeat
    # current-state Redis; "" = REDIS_URL
    state_redis_url: str = setting("STATE_REDIS_URL", "", parse_redis_url)
    mongodb_uri: str = setting("MONGODB_URI", "mongodb://127.0.0.1:27017", parse_str)
    # "package.module:callable" building the Mongo client from (uri, timeout_ms) instead of
    # pymongo: the hook for offline stand-ins (localrun sets its own); "" = pymongo
    mongo_client_factory: str = setting("MONGO_CLIENT_FACTORY", "", parse_factory)
    mongodb_db: str = setting("MONGODB_DB", "okex")  # the original design's database name
    # server selection / connect timeout; short, because the task retries (pymongo's is 30 s)
    mongo_timeout_ms: int = setting("MONGODB_TIMEOUT_MS", 5000)
    redis_timeout_s: float = setting("REDIS_TIMEOUT_S", 5.0)  # socket timeout, state client

    # --- broker and worker -------------------------------------------------------------------
    visibility_timeout_s: int = setting("BROKER_VISIBILITY_TIMEOUT", 3600)
    unacked_restore_interval_s: int = setting("BROKER_RESTORE_INTERVAL", 10)  # kombu default
    unacked_restore_throttle: int = setting("BROKER_RESTORE_THROTTLE", 10)  # kombu default
    # backfill workers: pass -O/--prefetch-multiplier 1
    prefetch_multiplier: int = setting("CELERY_PREFETCH_MULTIPLIER", 4)
    # Heroku's grace is 30 s, and the worker waits this long even when idle
    soft_shutdown_s: float = setting("CELERY_SOFT_SHUTDOWN_TIMEOUT", 15.0)

    # --- retries of transient storage errors -------------------------------------------------
    retry_max: int = setting("INGEST_MAX_RETRIES", 10)
    retry_base_s: float = setting("INGEST_RETRY_BASE_S", 2.0)  # first countdown, then doubled
    retry_cap_s: float = setting("INGEST_RETRY_CAP_S", 300.0)  # longest (< visibility timeout)
    task_soft_time_limit_s: int = setting("INGEST_SOFT_TIME_LIMIT", 60)  # a batch takes ms
    task_time_limit_s: int = setting("INGEST_TIME_LIMIT", 90)  # hard limit, replaces the child

    # --- Redis memory bounds (see docs/data-model.md, "Redis memory budget") -------------------
    order_ttl_s: int = setting("ORDER_KEY_TTL_S", 7 * 86400)  # order<N> hashes, dedupe keys
    state_ttl_s: int = setting("STATE_TTL_S", 86400)  # state keys of quiet instruments
    account_ttl_s: int = setting("ACCOUNT_TTL_S", 0)  # balance:/position: keys (0 = keep)
    trades_cap: int = setting("TRADES_CAP", 100)  # latest trades kept per instId

    # --- the history path (docs/history-path.md) -----------------------------------------------
    # parked history + the chunk being drained, in bytes (zlib JSON); with the spool below and the
    # broker's queues it keeps a 25 MB Redis plan from filling (docs/data-model.md)
    history_pending_max_bytes: int = setting("HISTORY_PENDING_MAX_BYTES", 8_000_000)
    deadletter_spool_max_bytes: int = setting("DEADLETTER_SPOOL_MAX_BYTES", 2_000_000)
    # one MongoDB write (ingest inline, drain chunk, probe) at most this long (pymongo.timeout)
    history_write_timeout_s: float = setting("HISTORY_WRITE_TIMEOUT_S", 1.0)
    history_slow_ms: float = setting("HISTORY_SLOW_MS", 150.0)  # slower writes count as failures
    # ... and this many in a row open the breaker (one slow write under load is no outage)
    history_slow_writes: int = setting("HISTORY_SLOW_WRITES", 3)
    history_breaker_failures: int = setting("HISTORY_BREAKER_FAILURES", 1)  # consecutive: open
    history_breaker_open_s: float = setting("HISTORY_BREAKER_OPEN_S", 2.0)  # open, then a probe
    history_breaker_cache_s: float = setting("HISTORY_BREAKER_CACHE_S", 0.25)  # per process
    history_drain_lease_s: float = setting("HISTORY_DRAIN_LEASE_S", 30.0)  # a lost drain's lease
    history_drain_budget_s: float = setting("HISTORY_DRAIN_BUDGET_S", 5.0)  # one drain task's run
    history_drain_chunk_bytes: int = setting("HISTORY_DRAIN_CHUNK_BYTES", 200_000)
    history_drain_every_s: float = setting("HISTORY_DRAIN_EVERY_S", 10.0)  # beat's safety net
    # after a state (Redis) write failed, this process skips state writes this long
    state_skip_s: float = setting("STATE_SKIP_S", 0.5)
    # the workers' /metrics (breaker, backlog bytes), served by the main worker process; 0 = off
    metrics_port: int = setting("WORKER_METRICS_PORT", 0)

    # --- MongoDB history bounds ----------------------------------------------------------------
    # one books push kept per instId+channel per window (0 = every push; full snapshots always)
    books_sample_ms: int = setting("BOOKS_SAMPLE_MS", 1000)
    books_retention_s: int = setting("BOOKS_RETENTION_S", 7 * 86400)  # TTL on books.dt; 0 = keep

    # --- duplicates from redundant feeders (docs/redundancy-workers.md) -------------------------
    # how long a stored record's identity is remembered (seen:* sets on the state Redis), so the
    # other feeder's copy of it is dropped before any write; 0 = no duplicate check
    dedupe_ttl_s: int = setting("INGEST_DEDUPE_TTL_S", 30)
    # the worker's young-generation GC threshold (tasks/worker_gc.py); 0 = Python's 700
    gc_gen0: int = setting("WORKER_GC_GEN0", 50_000)

    # --- OKX REST (backfill, audit, snapshots); credentials only from the environment -----------
    okx_rest_url: str = setting("OKX_REST_URL", PROD_REST_URL, parse_http_url)
    okx_demo: bool = setting("OKX_DEMO", False)  # send x-simulated-trading: 1
    credentials: Credentials | None = None  # OKX_API_KEY/_SECRET/_PASSPHRASE
    rest_timeout_s: float = setting("OKX_REST_TIMEOUT_S", 10.0)  # one REST request
    rest_rate_factor: float = setting("OKX_REST_RATE_FACTOR", DEFAULT_RATE_FACTOR, parse_share)
    rest_fallback_share: float = setting("OKX_REST_FALLBACK_SHARE", FALLBACK_SHARE, parse_share)

    # --- backfill (docs/backfill.md) -------------------------------------------------------------
    backfill_sweep_s: float = setting("BACKFILL_SWEEP_S", 60.0)  # beat sweep period
    backfill_lease_s: float = setting("BACKFILL_LEASE_S", 120.0)  # renewed per page
    # re-send an open gap untouched this long
    backfill_requeue_after_s: float = setting("BACKFILL_REQUEUE_AFTER_S", 120.0)
    backfill_max_attempts: int = setting("BACKFILL_MAX_ATTEMPTS", 8)  # then unrepairable
    backfill_retry_s: float = setting("BACKFILL_RETRY_S", 15.0)  # after a transient failure
    # a redundant shard: how long a fresh gap waits for the other feeders' coverage of its window
    # to be written before its uncovered part goes to REST (docs/redundancy.md)
    backfill_coverage_wait_s: float = setting("BACKFILL_COVERAGE_WAIT", 5.0)
    backfill_stale_s: float = setting("BACKFILL_STALE_S", 300.0)  # silent stream -> stale gap
    feeder_dead_s: float = setting("FEEDER_DEAD_S", FEEDER_DEAD_S)  # older heartbeat = dead
    backfill_inst_types: tuple[str, ...] = setting(
        "BACKFILL_INST_TYPES", ("SPOT", "MARGIN", "SWAP", "FUTURES", "OPTION")
    )
    # orders created this long before a gap may complete inside it
    orders_lookback_s: int = setting("BACKFILL_ORDERS_LOOKBACK_S", 86400)
    # fills sync period (REST is their only source); how far back the first sync reaches
    fills_every_s: float = setting("BACKFILL_FILLS_EVERY_S", 60.0)
    fills_first_window_s: int = setting("BACKFILL_FILLS_WINDOW_S", 3 * 86400)

    # --- audit -----------------------------------------------------------------------------------
    audit_every_s: float = setting("AUDIT_EVERY_S", 600.0)  # audit period (beat)
    audit_window_s: int = setting("AUDIT_WINDOW_S", 3600)  # trailing window audited at most
    audit_lag_s: int = setting("AUDIT_LAG_S", 60)  # newest seconds left to the feed
    # "" = every instrument with a trades watermark
    audit_instruments: tuple[str, ...] = setting("AUDIT_INSTRUMENTS", ())
    vwap_window_s: float = setting("VWAP_WINDOW_S", 300.0)  # derived data (docs/derived.md)
    derive_every_s: float = setting("DERIVE_EVERY_S", 5.0)  # beat period of the rebuild
    derive_batch: int = setting("DERIVE_BATCH", 2000)  # dirty minutes per rebuild at most

    # --- test-only hook (never set in production) ------------------------------------------------
    test_pause_after: int = setting("OKX_TEST_PAUSE_AFTER", 0)  # pause a batch after N records
    test_pause_file: str = setting("OKX_TEST_PAUSE_FILE", "")  # ...while this file exists

    @property
    def state_url(self) -> str:
        return self.state_redis_url or self.redis_url

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WorkerSettings:
        env = _environ(env)
        values = _read(cls, [(env, True)])
        uri = values.get("mongodb_uri", cls.mongodb_uri)
        parse_mongo_uri("MONGODB_URI", uri, any_scheme=bool(values.get("mongo_client_factory")))
        built = cls(credentials=_credentials(env), **values)
        for name in ("HISTORY_PENDING_MAX_BYTES", "DEADLETTER_SPOOL_MAX_BYTES",
                     "HISTORY_WRITE_TIMEOUT_S", "HISTORY_BREAKER_FAILURES",
                     "HISTORY_DRAIN_CHUNK_BYTES", "HISTORY_DRAIN_BUDGET_S"):  # fmt: skip
            if getattr(built, _FIELD_BY_ENV[name]) <= 0:
                raise ConfigError(f"{name} must be positive")
        return built

    __repr__ = _redacted_repr


_FIELD_BY_ENV = {f.metadata["env"]: f.name for f in fields(WorkerSettings) if "env" in f.metadata}
_current: WorkerSettings | None = None


def current() -> WorkerSettings:
    """The worker process's settings, read from the environment once."""
    global _current
    if _current is None:
        _current = WorkerSettings.from_env()
    return _current


def use(settings: WorkerSettings | None) -> None:
    """Install `settings` for this process (tests); None re-reads the environment next time."""
    global _current
    _current = settings


# ----- logging and the web process -------------------------------------------------------------
@dataclass(frozen=True)
class LogSettings:
    level: str = "INFO"  # LOG_LEVEL
    fmt: str = "logfmt"  # LOG_FORMAT: logfmt | json
    secrets: tuple[str, ...] = field(default=(), repr=False)  # values the logs redact


def load_logging(env: Mapping[str, str] | None = None) -> LogSettings:
    from core.logs import FORMATS, secret_values

    env = _environ(env)
    fmt = parse_str("LOG_FORMAT", env.get("LOG_FORMAT") or "logfmt").lower()
    if fmt not in FORMATS:
        raise ConfigError(f"LOG_FORMAT must be one of {', '.join(FORMATS)}, got {fmt!r}")
    level = parse_str("LOG_LEVEL", env.get("LOG_LEVEL") or "INFO").upper()
    return LogSettings(level=level, fmt=fmt, secrets=tuple(secret_values(env)))


@dataclass(frozen=True)
class WebSettings:
    basic_auth: list[str] | None = field(default=None, repr=False)  # WEB_USER + WEB_PASSWORD
    auth_error: str | None = None  # why Flower must not start (no authentication chosen)
    max_tasks: int | None = 10_000  # None: FLOWER_MAX_TASKS is set, Flower applies it
    purge_offline_workers: int | None = 600  # None: FLOWER_PURGE_OFFLINE_WORKERS is set
    log: LogSettings = LogSettings()
    port: int = setting("PORT", 8000)  # Heroku's routed port: read API, dashboard, /flower
    api_token: str = field(default="", repr=False, metadata={"env": "WEB_API_TOKEN"})
    flower_basic_auth: str = field(default="", repr=False, metadata={"env": "FLOWER_BASIC_AUTH"})
    no_auth: bool = setting("WEB_NO_AUTH", False)  # the API open too (a local demo only)
    flower: bool = setting("WEB_FLOWER", True)  # 0: no Flower child (API-only tests, bench)
    flower_port: int = setting("WEB_FLOWER_PORT", 0)  # Flower's loopback port; 0 = a free one
    # latest-state bodies kept while Redis tracks their keys (web/state_cache.py); 0 = off
    state_cache_max: int = setting("WEB_STATE_CACHE_MAX", 4096)


def load_web(env: Mapping[str, str] | None = None) -> WebSettings:
    env = _environ(env)
    auth, error = web_basic_auth(env)
    values = _read(WebSettings, [(env, True)])
    own = ("max_tasks", "purge_offline_workers")  # None: FLOWER_<NAME> is set, Flower applies it
    values.update({n: None for n in own if f"FLOWER_{n.upper()}" in env})
    return WebSettings(basic_auth=auth, auth_error=error, log=load_logging(env), **values)
