"""Every command turns an operator's error into one line on stderr and an exit status, never a
traceback, never a password (core/cli_errors.py). The subprocess tests run the real commands
against a Redis, a MongoDB and an OKX REST where nothing listens, and with malformed URLs; the
unit tests pin the policy itself (a bug still shows its traceback, redacted)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from core import cli_errors
from core.errors import AuthFailed, ConfigError, NetworkError, NoCredentials
from localrun.redis_server import free_port

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "hunter2-s3cret"
CELERY = str(Path(sys.executable).with_name("celery"))

# Every variable these commands read that the machine running the tests may have set.
_CLEARED = (
    "REDIS_URL",
    "STATE_REDIS_URL",
    "MONGODB_URI",
    "MONGO_CLIENT_FACTORY",
    "OKX_REST_URL",
    "OKX_CONFIG",
    "LOG_LEVEL",
    "LOG_FORMAT",
)


def run(args: list[str], timeout: float = 60, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in _CLEARED}
    return subprocess.run(
        args if args[0] == CELERY else [sys.executable, "-m", *args],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_one_line(proc: subprocess.CompletedProcess, code: int, *words: str) -> str:
    err = proc.stderr
    assert proc.returncode == code, (proc.returncode, err)
    assert "Traceback" not in err and PASSWORD not in err + proc.stdout
    assert len(err.strip().splitlines()) == 1, err
    for word in words:
        assert word in err, err
    return err


def dead_url(scheme: str) -> str:
    return f"{scheme}://user:{PASSWORD}@127.0.0.1:{free_port()}"


# ----- the policy ----------------------------------------------------------------------------------
def test_operator_errors_map_to_their_exit_status_and_name_the_setting():
    targets = {"okx": cli_errors.Target("OKX_REST_URL", f"https://u:{PASSWORD}@okx.example")}
    cases = [
        (ConfigError("REDIS_URL is bad"), 2, "configuration error: REDIS_URL is bad"),
        (NoCredentials("orders repair needs OKX credentials"), 2, "configuration error"),
        (NetworkError("GET /x: network error"), 1, "cannot reach OKX REST at https://***@"),
        (AuthFailed("50111 invalid key", "50111"), 1, "check OKX_API_KEY"),
    ]
    for exc, code, words in cases:
        got = cli_errors.describe(exc, targets)
        assert got is not None and got[0] == code and words in got[1], got
        assert PASSWORD not in got[1] and "\n" not in got[1]
    assert cli_errors.describe(ValueError("a bug")) is None


def test_a_bug_shows_its_traceback_redacted_and_ctrl_c_exits_130(capsys):
    def bug() -> int:
        raise ValueError(f"boom at redis://user:{PASSWORD}@host:6379")

    assert cli_errors.run_cli("prog", bug) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "ValueError: boom" in err and PASSWORD not in err

    def interrupted() -> int:
        raise KeyboardInterrupt

    assert cli_errors.run_cli("prog", interrupted) == 130
    assert capsys.readouterr().err == "prog: interrupted\n"


# ----- the real commands ------------------------------------------------------------------------------
COMMANDS_READING_REDIS_URL = [
    ["collector"],
    ["collector", "status"],
    ["tasks.backfill", "gaps"],
    ["tasks.deadletters", "list"],
    ["tasks.migrate"],
    [CELERY, "-A", "tasks", "worker", "--pool", "solo"],
    [CELERY, "-A", "tasks", "beat"],
]


@pytest.mark.integration
@pytest.mark.parametrize("command", COMMANDS_READING_REDIS_URL, ids=lambda c: " ".join(c[-3:]))
@pytest.mark.parametrize("url", ["notaurl", f"http://user:{PASSWORD}@127.0.0.1:6379/0"])
def test_a_malformed_redis_url_is_one_configuration_line(command, url):
    proc = run(command, REDIS_URL=url)
    assert_one_line(proc, 2, "configuration error: REDIS_URL")


@pytest.mark.integration
@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"OKX_REST_URL": "ftp://okx.example"}, "OKX_REST_URL"),
        ({"MONGODB_URI": f"mysql://user:{PASSWORD}@db"}, "MONGODB_URI"),
        ({"OKX_API_KEY": "k-only"}, "incomplete OKX credentials"),
    ],
)
def test_other_malformed_settings_are_one_configuration_line(env, words):
    assert_one_line(run(["tasks.backfill", "gaps"], **env), 2, "configuration error", words)


@pytest.mark.integration
@pytest.mark.parametrize(
    "command", [["collector", "status"], ["tasks.backfill", "gaps"], ["tasks.backfill", "sweep"]]
)
def test_redis_where_nothing_listens_is_one_line_naming_redis_url(command):
    proc = run(command, REDIS_URL=dead_url("redis") + "/0")
    assert_one_line(proc, 1, "cannot reach Redis at redis://***@127.0.0.1", "REDIS_URL")


@pytest.mark.integration
@pytest.mark.parametrize("command", [["tasks.migrate"], ["tasks.deadletters", "list"]])
def test_mongodb_where_nothing_listens_is_one_line_naming_mongodb_uri(command):
    proc = run(command, MONGODB_URI=dead_url("mongodb") + "/", MONGODB_TIMEOUT_MS="200")
    assert_one_line(proc, 1, "cannot reach MongoDB at mongodb://***@127.0.0.1", "MONGODB_URI")


@pytest.mark.integration
def test_okx_where_nothing_listens_fails_the_manual_gap_in_one_line(redis_url):
    import redis

    proc = run(
        ["tasks.backfill", "run", "trades", "BTC-USDT", "--no-progress"],
        timeout=120,
        REDIS_URL=redis_url,
        MONGO_CLIENT_FACTORY="mongomock:MongoClient",
        OKX_REST_URL=f"http://127.0.0.1:{free_port()}",
        OKX_REST_TIMEOUT_S="0.3",
    )
    assert_one_line(proc, 1, "gap 1 failed: cannot reach OKX REST at http://127.0.0.1")
    gap = redis.Redis.from_url(redis_url, decode_responses=True).hgetall("gap:1")
    assert gap["status"] == "failed" and "NetworkError" in gap["reason"]


@pytest.mark.integration
def test_usage_errors_stay_argparse_ones():
    proc = run(["tasks.backfill", "frobnicate"])
    assert proc.returncode == 2 and "usage:" in proc.stderr and "Traceback" not in proc.stderr
    assert "exit status: 0 done" in run(["tasks.deadletters", "--help"]).stdout


@pytest.mark.integration
def test_okxsim_on_a_taken_port_is_one_line():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = run(["okxsim", "--port", str(port)], timeout=30)
    assert proc.returncode == cli_errors.EXIT_FAILURE
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "okxsim: cannot listen" in line]
    assert len(lines) == 1 and str(port) in lines[0], proc.stderr
