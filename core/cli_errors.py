"""One policy for every command line: an operator error is one line and an exit code, a bug is a
traceback, and neither ever shows a secret.

    exit 0    done
    exit 1    a runtime failure: Redis, MongoDB or OKX unreachable or refusing, a failed backfill
              (and a bug, whose traceback is printed, redacted)
    exit 2    a configuration or usage error: fix the settings or the command line (argparse's
              own usage errors keep their exit status 2)
    exit 130  interrupted (Ctrl-C)

`run_cli(prog, body, targets)` runs a command's body and maps what it raises: ConfigError,
redis errors, pymongo errors, kombu's broker errors and the OKX REST errors (okx.errors) each
become one line on stderr saying what failed, at which setting and URL (password redacted), and
what to check. Anything else is a bug: its traceback is printed, every line of it redacted.

`targets` says which URL each service was reached at, for the message; it is called only when an
error is reported (reading the settings may itself be what failed, so it may return nothing).

The database and queue libraries are matched by class, looked up in `sys.modules` instead of
imported: core/ sits below the feeder, which has no pymongo, and an exception of a library can
only exist once that library is loaded.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from core.config_parsers import redact_url
from core.errors import (
    AuthFailed,
    BadReply,
    ConfigError,
    NetworkError,
    NoCredentials,
    PlanError,
    RateLimited,
    Rejected,
    RestError,
    Unavailable,
)

__all__ = [
    "EXIT_CODES_EPILOG",
    "EXIT_FAILURE",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "Target",
    "describe",
    "feeder_targets",
    "report",
    "redacted_traceback",
    "run_cli",
    "worker_targets",
]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a Ctrl-C'd command

EXIT_CODES_EPILOG = (
    "exit status: 0 done; 1 a runtime failure (Redis, MongoDB or OKX unreachable or refusing; "
    "a failed backfill), one line on stderr; 2 a configuration or usage error; 130 interrupted."
)

_DETAIL_MAX = 240  # characters of a library's message kept (pymongo's run to kilobytes)


@dataclass(frozen=True)
class Target:
    """Where a command reached one service: the setting's name and its value."""

    setting: str
    url: str

    def __str__(self) -> str:
        return f"{redact_url(self.url)} ({self.setting})"


Targets = Mapping[str, Target]  # "redis" | "mongodb" | "okx" -> where


def worker_targets() -> dict[str, Target]:
    """The workers' services (backfill, dead letters, migrate), from WorkerSettings."""
    from core import settings

    try:
        s = settings.current()
    except ConfigError:
        return {}
    redis_setting = "REDIS_URL" if s.state_url == s.redis_url else "REDIS_URL or STATE_REDIS_URL"
    return {
        "redis": Target(redis_setting, s.redis_url),
        "mongodb": Target("MONGODB_URI", s.mongodb_uri),
        "okx": Target("OKX_REST_URL", s.okx_rest_url),
    }


def feeder_targets(config_path: str | None = None) -> dict[str, Target]:
    """The feeder's services (its ledger Redis, OKX REST), from FeederSettings."""
    from core import settings

    try:
        s = settings.load(config_path=config_path)
    except ConfigError:
        return {}
    return {"redis": Target("REDIS_URL", s.redis_url), "okx": Target("OKX_REST_URL", s.rest_url)}


def _loaded(module: str, *names: str) -> tuple[type, ...]:
    """Classes of a library, if it is loaded (without importing it: see the module doc)."""
    mod = sys.modules.get(module)
    return tuple(c for c in (getattr(mod, n, None) for n in names) if isinstance(c, type))


def _detail(exc: BaseException) -> str:
    text = " ".join(str(exc).split()).rstrip(".") or type(exc).__name__
    return text if len(text) <= _DETAIL_MAX else text[: _DETAIL_MAX - 3] + "..."


def _at(targets: Targets, service: str, what: str) -> str:
    target = targets.get(service)
    return f"{what} at {target}" if target else what


def describe(exc: BaseException, targets: Targets | None = None) -> tuple[int, str] | None:
    """(exit status, one line) for an operator error; None for anything else (a bug)."""
    t = targets or {}
    detail = _detail(exc)
    if isinstance(exc, ConfigError):
        return EXIT_USAGE, f"configuration error: {detail}"
    if isinstance(exc, PlanError):  # a request (a range, a channel) that cannot be planned
        return EXIT_USAGE, f"error: {detail}"
    if isinstance(exc, RestError):
        return _describe_rest(exc, t, detail)
    redis_errors = _loaded("redis.exceptions", "RedisError")
    if redis_errors and isinstance(exc, redis_errors):
        auth = _loaded(
            "redis.exceptions", "AuthenticationError", "AuthenticationWrongNumberOfArgsError"
        )
        reach = _loaded("redis.exceptions", "ConnectionError", "TimeoutError")
        if auth and isinstance(exc, auth):
            where, check = (
                _at(t, "redis", "Redis refused the login"),
                "check the password in the URL",
            )
        elif reach and isinstance(exc, reach):
            where = _at(t, "redis", "cannot reach Redis")
            check = "check that Redis is running there and the URL is right"
        else:
            where, check = _at(t, "redis", "Redis failed"), "check the URL and the server's log"
        return EXIT_FAILURE, f"{where}: {detail}; {check}"
    pymongo_config = _loaded("pymongo.errors", "ConfigurationError", "InvalidURI")
    if pymongo_config and isinstance(exc, pymongo_config):
        return EXIT_USAGE, f"configuration error: MONGODB_URI: {detail}"
    pymongo_errors = _loaded("pymongo.errors", "PyMongoError")
    if pymongo_errors and isinstance(exc, pymongo_errors):
        reach = _loaded("pymongo.errors", "ConnectionFailure")
        if reach and isinstance(exc, reach):
            where = _at(t, "mongodb", "cannot reach MongoDB")
            check = "check that MongoDB is running there (MONGODB_TIMEOUT_MS: how long to wait)"
        else:
            where = _at(t, "mongodb", "MongoDB refused")
            check = "check the user, password and database in the URI"
        return EXIT_FAILURE, f"{where}: {detail}; {check}"
    broker_errors = _loaded("kombu.exceptions", "OperationalError")
    if broker_errors and isinstance(exc, broker_errors):
        where = _at(t, "redis", "cannot reach the Celery broker")
        return EXIT_FAILURE, f"{where}: {detail}; check that Redis is running there"
    if isinstance(exc, ConnectionError):  # a plain socket (okxsim's port, a health server)
        return EXIT_FAILURE, f"connection failed: {detail}"
    return None


def _describe_rest(exc: RestError, t: Targets, detail: str) -> tuple[int, str]:
    creds = "OKX_API_KEY, OKX_API_SECRET, OKX_API_PASSPHRASE"
    if isinstance(exc, NoCredentials):
        return EXIT_USAGE, f"configuration error: {detail}"
    if isinstance(exc, AuthFailed):
        return EXIT_FAILURE, (
            f"{_at(t, 'okx', 'OKX REST')} refused the credentials: {detail}; check {creds} "
            "and OKX_DEMO (a demo key needs OKX_DEMO=1)"
        )
    if isinstance(exc, NetworkError):
        return EXIT_FAILURE, (
            f"{_at(t, 'okx', 'cannot reach OKX REST')}: {detail}; check the URL and the network"
        )
    if isinstance(exc, RateLimited):
        return EXIT_FAILURE, (
            f"{_at(t, 'okx', 'OKX REST')} rate-limited every retry: {detail}; try later, or "
            "lower OKX_REST_RATE_FACTOR if other programs share this IP or key"
        )
    if isinstance(exc, Unavailable):
        return EXIT_FAILURE, f"{_at(t, 'okx', 'OKX REST')} is unavailable: {detail}; try later"
    if isinstance(exc, BadReply):
        return EXIT_FAILURE, (
            f"{_at(t, 'okx', 'OKX REST')} sent a reply OKX does not document: {detail}; check "
            "that the URL points at OKX"
        )
    if isinstance(exc, Rejected):
        return EXIT_FAILURE, f"OKX rejected the request: {detail}"
    return EXIT_FAILURE, f"{_at(t, 'okx', 'OKX REST')} failed: {detail}"


def _redactor() -> Callable[[str], str]:
    """Hides the environment's secrets and any URL's password; URL passwords alone when the
    logging settings themselves cannot be read."""
    from core.logs import Redactor
    from core.settings import load_logging

    try:
        return Redactor(load_logging().secrets)
    except ConfigError:
        return Redactor()


def report(prog: str, line: str) -> None:
    """Print one operator line on stderr: `prog: line`, secrets redacted, newlines folded."""
    text = " ".join(f"{prog}: {line}".split())
    print(_redactor()(text), file=sys.stderr, flush=True)


def run_cli(
    prog: str,
    body: Callable[[], int],
    targets: Callable[[], Targets] | None = None,
    *,
    log_level: str | None = "ERROR",
) -> int:
    """Run a command's body under the policy above; returns its exit status.

    `log_level`: the body's logging (LOG_FORMAT, redacted), only errors by default, so that a
    failure the command reports in its one line is not said again by the library that saw it
    first; restored afterwards (a test calling main() keeps its own). None: leave it alone (the
    feeder sets up its own)."""
    with _cli_logging(log_level):
        try:
            return body()
        except KeyboardInterrupt:
            report(prog, "interrupted")
            return EXIT_INTERRUPTED
        except Exception as exc:  # noqa: BLE001 - every exception ends in a line or a traceback
            try:
                where = targets() if targets is not None else {}
            except Exception:  # noqa: BLE001 - the message goes out without the URLs
                where = {}
            verdict = describe(exc, where)
            if verdict is None:
                print(redacted_traceback(exc), end="", file=sys.stderr, flush=True)
                return EXIT_FAILURE
            code, line = verdict
            report(prog, line)
            return code


def redacted_traceback(exc: BaseException) -> str:
    """A bug's traceback, as Python prints it, with every secret redacted."""
    return _redactor()("".join(traceback.format_exception(exc)))


@contextmanager
def _cli_logging(level: str | None) -> Iterator[None]:
    if level is None:
        yield
        return
    from core.logs import setup
    from core.settings import load_logging

    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        configured = load_logging()
    except ConfigError:  # the command reports it when it reads the settings
        yield
        return
    setup(level, configured.fmt, secrets=configured.secrets)
    try:
        yield
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
        logging.captureWarnings(False)
