"""Structured logs: one line per event, `key=value` (logfmt) by default or JSON, secrets redacted.

Why logfmt: Heroku's router and platform logs are key=value lines, `heroku logs` and the log
add-ons (Papertrail, Logtail...) index them as fields, and a person can still read them in a
terminal. `LOG_FORMAT=json` gives one JSON object per line for shippers that want JSON.

    ts=2026-11-21T20:31:36.123Z level=info logger=collector.driver pid=4711 msg="public: connected"

Every line is one line: a traceback becomes an `exc=` field with its newlines escaped, so a log
router never splits one event into many. Fields passed with `extra={...}` are rendered after
`msg`; Celery's task name and id are added by tasks/logging_setup.py.

Redaction runs on the finished line, so no code path (a URL in an exception, a repr of settings, a
third-party library's message) can leak a secret: the values of secret-looking environment
variables (OKX_API_SECRET, FLOWER_BASIC_AUTH, ...) and the password part of any `scheme://user:
password@host` URL are replaced with `***`.

Settings (format, level, the secrets to hide) come from core.settings.load_logging(), the
environment's one reader; this module reads none. The feeder's entry point calls `setup()`;
Celery workers and beat call it through the `setup_logging` signal (tasks/logging_setup.py);
Flower through flowerconfig.py.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Iterable, Mapping
from typing import IO

import orjson

FORMATS = ("logfmt", "json")
MASK = "***"
# An environment variable whose name looks like one of these holds a secret.
_SECRET_NAME = re.compile(
    r"SECRET|PASSW|PASSPHRASE|TOKEN|API_KEY|BASIC_AUTH|CREDENTIAL|PRIVATE", re.IGNORECASE
)
# Variables that hold URLs with an optional password (their password is redacted by the URL rule,
# and also taken as a literal, in case it shows up without its URL).
_URL_VARS = ("REDIS_URL", "STATE_REDIS_URL", "MONGODB_URI", "BROKER_URL", "CELERY_BROKER_URL")
_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s\"']*:)[^@\s\"']+(?=@)")
_MIN_SECRET_LEN = 4  # shorter values ("0", "no") would redact half the line

# Attributes every LogRecord has; anything else on a record came from `extra=` or a filter.
_STANDARD = set(vars(logging.LogRecord("x", 0, "x", 0, "x", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


def secret_values(env: Mapping[str, str]) -> list[str]:
    """The literal strings to hide, longest first (so a value containing another is hidden whole)."""
    found: set[str] = set()
    for name, value in env.items():
        if not value:
            continue
        if _SECRET_NAME.search(name):
            found.add(value)
            # FLOWER_BASIC_AUTH=user:pass[,user2:pass2]: the passwords alone are secrets too.
            for pair in value.split(","):
                if ":" in pair:
                    found.add(pair.split(":", 1)[1])
        if name in _URL_VARS:
            m = re.search(r"://[^:/@\s]*:([^@\s]+)@", value)
            if m:
                found.add(m.group(1))
    return sorted((v for v in found if len(v) >= _MIN_SECRET_LEN), key=len, reverse=True)


class Redactor:
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = [s for s in secrets if s]

    def __call__(self, text: str) -> str:
        for s in self.secrets:
            if s in text:
                text = text.replace(s, MASK)
        return _URL_PASSWORD.sub(lambda m: m.group("head") + MASK, text)


def _logfmt_value(value: object) -> str:
    text = value if isinstance(value, str) else str(value)
    if text and not any(c in text for c in ' ="\\\n\r\t'):
        return text
    escaped = (
        text.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\t", "\\t")
    )
    return f'"{escaped}"'


def _iso_utc(created: float) -> str:
    return (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
        + f".{int(created % 1 * 1000):03d}Z"
    )


class StructuredFormatter(logging.Formatter):
    """LogRecord -> one logfmt or JSON line, redacted."""

    def __init__(self, fmt: str = "logfmt", redactor: Redactor | None = None) -> None:
        super().__init__()
        if fmt not in FORMATS:
            raise ValueError(f"LOG_FORMAT must be one of {FORMATS}, got {fmt!r}")
        self.fmt = fmt
        self.redact = redactor or Redactor()

    def fields(self, record: logging.LogRecord) -> dict:
        out = {
            "ts": _iso_utc(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_") and value is not None:
                out[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            out["exc"] = self.formatException(record.exc_info).strip()
        elif record.exc_text:
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = record.stack_info
        return out

    def format(self, record: logging.LogRecord) -> str:
        fields = self.fields(record)
        if self.fmt == "json":
            line = orjson.dumps(fields, default=str).decode()
        else:
            line = " ".join(f"{k}={_logfmt_value(v)}" for k, v in fields.items())
        return self.redact(line)


def setup(
    level: str | int = "INFO",
    fmt: str = "logfmt",
    stream: IO[str] | None = None,
    secrets: Iterable[str] = (),
) -> logging.Handler:
    """Route every logger of this process through one structured handler on stderr (or `stream`).

    `fmt` and `secrets` (the literal values to redact) come from the process's settings
    (core.settings.load_logging(): LOG_FORMAT and the secret-looking environment variables).
    Replaces the root logger's handlers, so a library that installed its own (tornado, Celery)
    does not print a second, unstructured copy.
    """
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(StructuredFormatter(fmt.lower(), Redactor(secrets)))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    if isinstance(level, str):
        level = logging.getLevelName(level.upper())
        if not isinstance(level, int):
            level = logging.INFO
    root.setLevel(level)
    logging.captureWarnings(True)
    return handler
