"""The export command as an operator meets it, in subprocesses: each mistake (bad kind, bad time,
inverted range, bad bar, unwritable --out, Parquet to stdout, MongoDB unreachable) is one line
on stderr and its exit status, never a traceback or a password, and leaves no file; the progress
bar shows on a terminal (a real pty) with the count known up front, and never otherwise.

The subprocesses get their MongoDB from MONGO_CLIENT_FACTORY=tests.test_export_cli:seeded, a
mongomock client holding SEEDED trades (mongomock lives in the process that uses it).
"""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path
from typing import Any

import mongomock
import pytest

from core import keys
from localrun.redis_server import free_port
from tests.test_export import INST, T0, read_rows, trade
from tests.test_operator_errors import PASSWORD, ROOT, assert_one_line, run

PROG = "tasks.export"
SEEDED = 999  # ~150 KB of CSV: more than a pipe holds; below 1000, so tqdm shows it unscaled
SEEDED_ENV = {"MONGODB_URI": "mongomock://seeded", "MONGO_CLIENT_FACTORY": f"{__name__}:seeded"}
RANGE = ["--start", str(T0), "--end", str(T0 + 10**6)]


def seeded(uri: str, timeout_ms: int) -> Any:
    """MONGO_CLIENT_FACTORY for the subprocesses: SEEDED trades, one per second."""
    client = mongomock.MongoClient()
    client.okex[keys.TRADES].insert_many([trade(i, T0 + 1000 * i) for i in range(SEEDED)])
    return client


def leftovers(where: Path) -> list[str]:
    return sorted(p.name for p in where.iterdir())


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["trades", INST, "--start", "yesterday", "--end", str(T0)], "--start: 'yesterday'"),
        (["trades", INST, "--start", str(T0), "--end", "2025-13-01"], "--end: '2025-13-01'"),
        (["trades", INST, "--start", str(T0 + 5), "--end", str(T0)], "must be after --start"),
        (["trades", INST, "--start", "1763000000", "--end", str(T0)], "seconds given"),
        (["candles", INST, *RANGE, "--bar", "7m"], "unknown bar '7m'"),
        (["trades", INST, *RANGE, "--bar", "1m"], "--bar and --source are for candles only"),
        (["trades", INST, *RANGE, "--out", "-"], "--out - (stdout) is for CSV only"),
    ],
)
def test_a_bad_request_is_one_line_and_exit_2(tmp_path, argv, words):
    if "--out" not in argv:
        argv = [*argv, "--out", str(tmp_path / "x.parquet")]
    proc = run([PROG, *argv], **SEEDED_ENV)
    assert_one_line(proc, 2, f"python -m {PROG}: error: ", words)
    assert leftovers(tmp_path) == []


def test_a_bad_kind_or_format_is_argparse_usage_and_exit_2(tmp_path):
    for argv in (
        ["books", INST, *RANGE, "--out", str(tmp_path / "x")],
        ["trades", INST, *RANGE, "--format", "xlsx", "--out", str(tmp_path / "x")],
    ):
        proc = run([PROG, *argv], **SEEDED_ENV)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert "invalid choice" in proc.stderr.splitlines()[-1]
    assert leftovers(tmp_path) == []


def test_an_unwritable_out_is_one_line_and_exit_2(tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("")
    for out in (tmp_path / "no" / "such" / "dir.parquet", a_file / "under-a-file.csv"):
        proc = run([PROG, "trades", INST, *RANGE, "--out", str(out)], **SEEDED_ENV)
        assert_one_line(proc, 2, f"error: cannot write {out}: ")
    assert leftovers(tmp_path) == ["file"]


def test_mongodb_unreachable_is_one_line_exit_1_and_no_file(tmp_path):
    uri = f"mongodb://export:{PASSWORD}@127.0.0.1:{free_port()}/?directConnection=true"
    out = tmp_path / "t.parquet"
    started = time.monotonic()
    proc = run([PROG, "trades", INST, *RANGE, "--out", str(out)], MONGODB_URI=uri,
               MONGODB_TIMEOUT_MS="300")  # fmt: skip
    assert_one_line(proc, 1, "cannot reach MongoDB at mongodb://", "(MONGODB_URI)")
    assert time.monotonic() - started < 30
    assert leftovers(tmp_path) == []


def test_a_pipe_gets_no_progress_bar_but_the_summary_and_the_file(tmp_path):
    out = tmp_path / "t.csv"
    proc = run([PROG, "trades", INST, *RANGE, "--format", "csv", "--out", str(out)], **SEEDED_ENV)
    assert_one_line(proc, 0, f"{SEEDED} trades rows of {INST} written to {out}")
    assert len(read_rows(out, "trades", "csv")) == SEEDED
    quiet = run([PROG, "trades", INST, *RANGE, "--out", str(out), "--quiet"], **SEEDED_ENV)
    assert quiet.returncode == 0 and quiet.stderr == "" and quiet.stdout == ""


def test_a_reader_that_leaves_early_is_one_line_and_exit_1():
    env = {**{k: v for k, v in os.environ.items() if k not in SEEDED_ENV}, **SEEDED_ENV}
    proc = subprocess.Popen(
        [sys.executable, "-m", PROG, "trades", INST, *RANGE, "--format", "csv", "--out", "-",
         "--batch-size", "10"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.read(200)  # the header and a row or two, then the reader goes
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 1
    assert err.strip() == "python -m tasks.export: stdout was closed before the export ended", err


def run_on_a_terminal(argv: list[str], timeout: float = 60) -> tuple[int, str]:
    """Run the command with stderr on a pseudo-terminal; (exit status, what the terminal got)."""
    master, slave = pty.openpty()
    # a new pty is 0 columns wide, where tqdm draws nothing; a terminal window has a size
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    env = {**{k: v for k, v in os.environ.items() if k not in SEEDED_ENV}, **SEEDED_ENV}
    proc = subprocess.Popen(
        [sys.executable, "-m", PROG, *argv],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=slave,
    )
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed its end
                break
            if not chunk:
                break
            seen += chunk
        elif proc.poll() is not None:
            break
    os.close(master)
    return proc.wait(timeout=timeout), seen.decode(errors="replace")


def test_a_terminal_gets_a_progress_bar_with_the_count_known_up_front(tmp_path):
    out = tmp_path / "t.parquet"
    code, seen = run_on_a_terminal(
        ["trades", INST, *RANGE, "--out", str(out), "--batch-size", "50"]
    )
    assert code == 0, seen
    frames = [f for f in seen.replace("\r\n", "\r").split("\r") if f"trades {INST}" in f]
    assert frames, seen
    assert f"{SEEDED}/{SEEDED}" in frames[-1] and "100%" in frames[-1], frames[-1]
    assert all(f"/{SEEDED} " in f for f in frames), frames  # the total from the first frame on
    assert "Traceback" not in seen
    assert len(read_rows(out, "trades", "parquet")) == SEEDED


def test_quiet_on_a_terminal_shows_nothing(tmp_path):
    out = tmp_path / "t.parquet"
    code, seen = run_on_a_terminal(["trades", INST, *RANGE, "--out", str(out), "--quiet"])
    assert code == 0 and seen == "", seen
    assert len(read_rows(out, "trades", "parquet")) == SEEDED
