"""Structured logs (core/logs.py): one line per event, parseable, secrets never printed."""

from __future__ import annotations

import io
import logging
import re

import orjson
import pytest

from core import logs
from core.settings import load_logging

ENV = {
    "OKX_API_KEY": "ak-1234-abcd",
    "OKX_API_SECRET": "S3CRET-value-xyz",
    "OKX_API_PASSPHRASE": "my pass phrase",
    "WEB_PASSWORD": "flower-pw-99",
    "FLOWER_BASIC_AUTH": "admin:basic-pw-77,ops:other-pw-88",
    "REDIS_URL": "rediss://:redis-pw-55@ec2.example.com:6380",
    "MONGODB_URI": "mongodb+srv://app:mongo-pw-66@cluster0.example.net/okex",
    "PATH": "/usr/bin",
    "LOG_LEVEL": "INFO",
    "FEEDER_BATCH_MAX": "500",
}
SECRETS = (
    "ak-1234-abcd",
    "S3CRET-value-xyz",
    "my pass phrase",
    "flower-pw-99",
    "basic-pw-77",
    "other-pw-88",
    "redis-pw-55",
    "mongo-pw-66",
)
LOGFMT_PAIR = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)')


def _logger(fmt="logfmt"):
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logs.StructuredFormatter(fmt, logs.Redactor(logs.secret_values(ENV))))
    log = logging.getLogger(f"test.logs.{fmt}")
    log.handlers, log.propagate, log.level = [handler], False, logging.DEBUG
    return log, out


def _parse_logfmt(line: str) -> dict:
    return {
        k: v[1:-1].replace('\\"', '"') if v.startswith('"') else v
        for k, v in LOGFMT_PAIR.findall(line)
    }


def test_logfmt_line_has_the_fields_and_extras():
    log, out = _logger()
    log.info("public: connected to %s", "ws://127.0.0.1:1/ws/v5/public", extra={"conn": "c1"})
    (line,) = out.getvalue().splitlines()
    f = _parse_logfmt(line)
    assert f["level"] == "info" and f["logger"] == "test.logs.logfmt" and f["conn"] == "c1"
    assert f["msg"] == "public: connected to ws://127.0.0.1:1/ws/v5/public"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", f["ts"]) and int(f["pid"]) > 0


def test_a_traceback_stays_on_one_line():
    log, out = _logger()
    try:
        raise ValueError("bad\nframe")
    except ValueError:
        log.exception("parse failed")
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    f = _parse_logfmt(lines[0])
    assert f["level"] == "error" and "Traceback" in f["exc"] and "ValueError" in f["exc"]


def test_json_format_is_one_object_per_line():
    log, out = _logger("json")
    log.warning('quote " and newline \n inside', extra={"n": 3})
    (line,) = out.getvalue().splitlines()
    obj = orjson.loads(line)
    assert obj["level"] == "warning" and obj["n"] == 3 and obj["msg"].startswith("quote")


@pytest.mark.parametrize("fmt", logs.FORMATS)
def test_secrets_never_reach_the_log_whatever_the_path(fmt):
    log, out = _logger(fmt)
    log.info("settings %r", ENV)  # a repr of everything
    log.info("broker at %s", ENV["REDIS_URL"])  # a URL
    log.warning("login with %s / %s", ENV["OKX_API_KEY"], ENV["OKX_API_PASSPHRASE"])
    log.info("other url redis://user:unknown-pw@10.0.0.1:6379/0")  # a URL not from env
    try:
        raise ConnectionError(f"cannot reach {ENV['MONGODB_URI']} with {ENV['OKX_API_SECRET']}")
    except ConnectionError:
        log.exception("mongo down")
    text = out.getvalue()
    for secret in (*SECRETS, "unknown-pw"):
        assert secret not in text, secret
    assert "ec2.example.com" in text and "cluster0.example.net" in text  # the rest stays readable
    assert len(text.splitlines()) == 5


def test_setup_replaces_handlers_and_reads_the_environment():
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        stream = io.StringIO()
        configured = load_logging({**ENV, "LOG_FORMAT": "json"})
        logs.setup("WARNING", configured.fmt, stream=stream, secrets=configured.secrets)
        assert len(root.handlers) == 1 and root.level == logging.WARNING
        logging.getLogger("x").warning("token %s", ENV["WEB_PASSWORD"])
        obj = orjson.loads(stream.getvalue())
        assert obj["msg"] == "token ***"
        with pytest.raises(ValueError):
            load_logging({"LOG_FORMAT": "xml"})
        with pytest.raises(ValueError):
            logs.setup(fmt="xml")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


def test_short_or_ordinary_values_are_not_treated_as_secrets():
    values = logs.secret_values(
        {
            "FEEDER_BATCH_MAX": "500",
            "OKX_API_KEY": "ab",
            "LOG_LEVEL": "INFO",
            "WEB_PASSWORD": "longer-one",
        }
    )
    assert values == ["longer-one"]


def test_celery_task_fields_and_quiet_success_lines():
    pytest.importorskip("celery")
    from celery.app.trace import LOG_SUCCESS

    from tasks.logging_setup import QuietSuccess, TaskFields

    rec = logging.LogRecord(
        "celery.app.trace",
        logging.INFO,
        "x",
        1,
        LOG_SUCCESS,
        {"name": "t", "id": "1", "runtime": 0.1, "return_value": None},
        None,
    )
    assert QuietSuccess().filter(rec) is False
    other = logging.LogRecord(
        "celery.app.trace", logging.INFO, "x", 1, "Task %s retry", ("t",), None
    )
    assert QuietSuccess().filter(other) is True
    assert TaskFields().filter(other) is True and not hasattr(other, "task_id")  # no task running
