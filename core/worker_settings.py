"""Worker settings: the only module that reads the environment.

`Settings.from_env()` builds a frozen object; celeryconfig.py, the clients and the writers take
their values from it. Every default is documented next to its field. Tests build their own
`Settings(...)` (or `replace(current(), ...)`) and install it with `use(...)`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from typing import Mapping

from okx.signing import Credentials

__all__ = ["Settings", "current", "use", "replace"]


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "")
    if raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not an integer") from None


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name}={raw!r} is not true or false")


def _list(env: Mapping[str, str], name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    return tuple(dict.fromkeys(p.strip() for p in raw.split(",") if p.strip()))


def _credentials(env: Mapping[str, str]) -> Credentials | None:
    names = ("OKX_API_KEY", "OKX_API_SECRET", "OKX_API_PASSPHRASE")
    values = [env.get(n, "") for n in names]
    if not any(values):
        return None
    if not all(values):
        missing = [n for n, v in zip(names, values) if not v]
        raise ValueError(f"incomplete OKX credentials: {', '.join(missing)} not set")
    return Credentials(api_key=values[0], secret=values[1], passphrase=values[2])


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "")
    if raw.strip() == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number") from None


@dataclass(frozen=True)
class Settings:
    # --- connections -------------------------------------------------------------------------
    redis_url: str = "redis://127.0.0.1:6379/0"      # REDIS_URL: the Celery broker (and RedBeat)
    state_redis_url: str = ""                          # STATE_REDIS_URL: current-state Redis; "" = REDIS_URL
    mongodb_uri: str = "mongodb://127.0.0.1:27017"     # MONGODB_URI (mongostandin://host:port = localrun stand-in)
    mongodb_db: str = "okex"                           # MONGODB_DB: the original design's database name
    mongo_timeout_ms: int = 5000                       # MONGODB_TIMEOUT_MS: server selection / connect timeout;
                                                       # short, because the task retries (pymongo's default is 30 s)
    redis_timeout_s: float = 5.0                       # REDIS_TIMEOUT_S: socket (connect) timeout of the state client

    # --- broker and worker -------------------------------------------------------------------
    visibility_timeout_s: int = 3600                   # BROKER_VISIBILITY_TIMEOUT
    unacked_restore_interval_s: int = 10               # BROKER_RESTORE_INTERVAL (kombu default 10)
    unacked_restore_throttle: int = 10                 # BROKER_RESTORE_THROTTLE (kombu default 10)
    prefetch_multiplier: int = 4                       # CELERY_PREFETCH_MULTIPLIER (backfill: pass -O/--prefetch-multiplier 1)
    soft_shutdown_s: float = 15.0                      # CELERY_SOFT_SHUTDOWN_TIMEOUT: Heroku's grace is 30 s, and
                                                       # the worker waits this long even when idle

    # --- retries of transient storage errors -------------------------------------------------
    retry_max: int = 10                                # INGEST_MAX_RETRIES
    retry_base_s: float = 2.0                          # INGEST_RETRY_BASE_S: first countdown, doubled each time
    retry_cap_s: float = 300.0                         # INGEST_RETRY_CAP_S: longest countdown (< visibility timeout)
    task_soft_time_limit_s: int = 60                   # INGEST_SOFT_TIME_LIMIT: one batch is milliseconds of work
    task_time_limit_s: int = 90                        # INGEST_TIME_LIMIT: hard limit, replaces the child

    # --- Redis memory bounds (see docs/data-model.md, "Redis memory budget") -------------------
    order_ttl_s: int = 7 * 86400                       # ORDER_KEY_TTL_S: order<N> hashes and their dedupe keys
    state_ttl_s: int = 86400                           # STATE_TTL_S: ticker/books/candle/trades keys of quiet instruments
    account_ttl_s: int = 0                             # ACCOUNT_TTL_S: balance:/position: keys (0 = keep)
    trades_cap: int = 100                              # TRADES_CAP: latest trades kept per instId

    # --- MongoDB history bounds ----------------------------------------------------------------
    books_sample_ms: int = 1000                        # BOOKS_SAMPLE_MS: keep one books push per instId+channel per window
                                                       # (0 = keep every push; full snapshots always kept)
    books_retention_s: int = 7 * 86400                 # BOOKS_RETENTION_S: TTL index on books.dt (0 = keep forever)

    # --- OKX REST (backfill, audit, snapshots); credentials only from the environment -----------
    okx_rest_url: str = "https://openapi.okx.com"      # OKX_REST_URL
    okx_demo: bool = False                             # OKX_DEMO: send x-simulated-trading: 1
    credentials: Credentials | None = field(default=None, repr=False)  # OKX_API_KEY/_SECRET/_PASSPHRASE
    rest_timeout_s: float = 10.0                       # OKX_REST_TIMEOUT_S: one REST request

    # --- backfill (docs/backfill.md) -------------------------------------------------------------
    backfill_sweep_s: float = 60.0                     # BACKFILL_SWEEP_S: beat sweep period
    backfill_lease_s: float = 120.0                    # BACKFILL_LEASE_S: a filling gap's lease, renewed per page
    backfill_requeue_after_s: float = 120.0            # BACKFILL_REQUEUE_AFTER_S: re-send an open gap untouched this long
    backfill_max_attempts: int = 8                     # BACKFILL_MAX_ATTEMPTS: then the gap ends unrepairable
    backfill_retry_s: float = 15.0                     # BACKFILL_RETRY_S: countdown after a transient failure
    backfill_stale_s: float = 300.0                    # BACKFILL_STALE_S: public stream silent this long -> stale gap
    feeder_dead_s: float = 30.0                        # FEEDER_DEAD_S: heartbeat older than this = dead feeder
    backfill_inst_types: tuple[str, ...] = ("SPOT", "MARGIN", "SWAP", "FUTURES", "OPTION")  # BACKFILL_INST_TYPES
    orders_lookback_s: int = 86400                     # BACKFILL_ORDERS_LOOKBACK_S: orders created this long
                                                       # before a gap may complete inside it
    fills_every_s: float = 60.0                        # BACKFILL_FILLS_EVERY_S: fills sync period (REST is their only source)
    fills_first_window_s: int = 3 * 86400              # BACKFILL_FILLS_WINDOW_S: how far back the first fills sync reaches

    # --- audit ---------------------------------------------------------------------------------------
    audit_every_s: float = 600.0                       # AUDIT_EVERY_S: audit period (beat)
    audit_window_s: int = 3600                         # AUDIT_WINDOW_S: trailing window audited at most
    audit_lag_s: int = 60                              # AUDIT_LAG_S: leave the newest seconds to the live feed
    audit_instruments: tuple[str, ...] = ()            # AUDIT_INSTRUMENTS: "" = every instrument with a trades watermark

    # --- test-only hook (never set in production) ------------------------------------------------
    test_pause_after: int = 0                          # OKX_TEST_PAUSE_AFTER: pause a batch after N records...
    test_pause_file: str = ""                          # OKX_TEST_PAUSE_FILE: ...while this file exists

    @property
    def state_url(self) -> str:
        return self.state_redis_url or self.redis_url

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        e = os.environ if env is None else env
        d = cls()
        return cls(
            redis_url=e.get("REDIS_URL") or d.redis_url,
            state_redis_url=e.get("STATE_REDIS_URL", ""),
            mongodb_uri=e.get("MONGODB_URI") or d.mongodb_uri,
            mongodb_db=e.get("MONGODB_DB") or d.mongodb_db,
            mongo_timeout_ms=_int(e, "MONGODB_TIMEOUT_MS", d.mongo_timeout_ms),
            redis_timeout_s=_float(e, "REDIS_TIMEOUT_S", d.redis_timeout_s),
            visibility_timeout_s=_int(e, "BROKER_VISIBILITY_TIMEOUT", d.visibility_timeout_s),
            unacked_restore_interval_s=_int(e, "BROKER_RESTORE_INTERVAL", d.unacked_restore_interval_s),
            unacked_restore_throttle=_int(e, "BROKER_RESTORE_THROTTLE", d.unacked_restore_throttle),
            prefetch_multiplier=_int(e, "CELERY_PREFETCH_MULTIPLIER", d.prefetch_multiplier),
            soft_shutdown_s=_float(e, "CELERY_SOFT_SHUTDOWN_TIMEOUT", d.soft_shutdown_s),
            retry_max=_int(e, "INGEST_MAX_RETRIES", d.retry_max),
            retry_base_s=_float(e, "INGEST_RETRY_BASE_S", d.retry_base_s),
            retry_cap_s=_float(e, "INGEST_RETRY_CAP_S", d.retry_cap_s),
            task_soft_time_limit_s=_int(e, "INGEST_SOFT_TIME_LIMIT", d.task_soft_time_limit_s),
            task_time_limit_s=_int(e, "INGEST_TIME_LIMIT", d.task_time_limit_s),
            order_ttl_s=_int(e, "ORDER_KEY_TTL_S", d.order_ttl_s),
            state_ttl_s=_int(e, "STATE_TTL_S", d.state_ttl_s),
            account_ttl_s=_int(e, "ACCOUNT_TTL_S", d.account_ttl_s),
            trades_cap=_int(e, "TRADES_CAP", d.trades_cap),
            books_sample_ms=_int(e, "BOOKS_SAMPLE_MS", d.books_sample_ms),
            books_retention_s=_int(e, "BOOKS_RETENTION_S", d.books_retention_s),
            okx_rest_url=e.get("OKX_REST_URL") or d.okx_rest_url,
            okx_demo=_bool(e, "OKX_DEMO", d.okx_demo),
            credentials=_credentials(e),
            rest_timeout_s=_float(e, "OKX_REST_TIMEOUT_S", d.rest_timeout_s),
            backfill_sweep_s=_float(e, "BACKFILL_SWEEP_S", d.backfill_sweep_s),
            backfill_lease_s=_float(e, "BACKFILL_LEASE_S", d.backfill_lease_s),
            backfill_requeue_after_s=_float(e, "BACKFILL_REQUEUE_AFTER_S", d.backfill_requeue_after_s),
            backfill_max_attempts=_int(e, "BACKFILL_MAX_ATTEMPTS", d.backfill_max_attempts),
            backfill_retry_s=_float(e, "BACKFILL_RETRY_S", d.backfill_retry_s),
            backfill_stale_s=_float(e, "BACKFILL_STALE_S", d.backfill_stale_s),
            feeder_dead_s=_float(e, "FEEDER_DEAD_S", d.feeder_dead_s),
            backfill_inst_types=_list(e, "BACKFILL_INST_TYPES", d.backfill_inst_types),
            orders_lookback_s=_int(e, "BACKFILL_ORDERS_LOOKBACK_S", d.orders_lookback_s),
            fills_every_s=_float(e, "BACKFILL_FILLS_EVERY_S", d.fills_every_s),
            fills_first_window_s=_int(e, "BACKFILL_FILLS_WINDOW_S", d.fills_first_window_s),
            audit_every_s=_float(e, "AUDIT_EVERY_S", d.audit_every_s),
            audit_window_s=_int(e, "AUDIT_WINDOW_S", d.audit_window_s),
            audit_lag_s=_int(e, "AUDIT_LAG_S", d.audit_lag_s),
            audit_instruments=_list(e, "AUDIT_INSTRUMENTS", d.audit_instruments),
            test_pause_after=_int(e, "OKX_TEST_PAUSE_AFTER", 0),
            test_pause_file=e.get("OKX_TEST_PAUSE_FILE", ""),
        )

    def __repr__(self) -> str:  # never print credentials embedded in URLs
        shown = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "credentials"}
        shown["credentials"] = "set" if self.credentials is not None else None
        for name in ("redis_url", "state_redis_url", "mongodb_uri"):
            shown[name] = _redact(shown[name])
        return "Settings(" + ", ".join(f"{k}={v!r}" for k, v in shown.items()) + ")"


def _redact(url: str) -> str:
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"


_current: Settings | None = None


def current() -> Settings:
    """The process's settings, read from the environment once."""
    global _current
    if _current is None:
        _current = Settings.from_env()
    return _current


def use(settings: Settings | None) -> None:
    """Install `settings` for this process (tests); None re-reads the environment next time."""
    global _current
    _current = settings
