"""A new user's first hour, end to end: `./dev.sh demo --seconds 60` in a fresh clone.

A second shell sources the environment file the demo prints and runs the printed backfill
example, which ends `filled`; it reads the stores while the demo runs; the demo stops by itself,
prints a summary (also summary.json) whose counts are at least what the second shell saw, removes
its environment file, and leaves no process behind.

The clone reuses this tree's venv (VENV=...): dev.sh reinstalls only when what a venv was
installed from differs, which it does not for a clone of the committed tree. The clone is of the
last commit: uncommitted changes are not in it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from localrun.processes import alive, descendants, identities
from tests.demo_process import DemoProcess
from tests.polling import wait_for

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
INSTALL_INPUTS = ("requirements.lock", "setup.py", "okx/_bookaccel.c", "pyproject.toml")
# What the second shell reads: documents per collection, gaps by status (the same stores the
# summary reads, through the demo's environment only).
READ_STORES = """
import json, os, redis
from collections import Counter
from core import keys
from pymongo import MongoClient
db = MongoClient(os.environ["MONGODB_URI"])[os.environ.get("MONGODB_DB", "okex")]
r = redis.Redis.from_url(os.environ["REDIS_URL"], decode_responses=True)
gaps = Counter(r.hget(keys.gap_key(g), "status") for g in r.zrange(keys.GAPS_ALL, 0, -1))
print(json.dumps({"mongodb": {n: db[n].count_documents({}) for n in keys.COLLECTIONS},
                  "gaps": dict(gaps)}))
"""


def _side(env_file: Path, command: str, cwd: Path) -> subprocess.CompletedProcess:
    """A second shell with nothing of the demo in its environment but what it sources."""
    clean = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp")}
    return subprocess.run(
        ["bash", "-c", f"source {shlex.quote(str(env_file))} && {command}"],
        cwd=cwd,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.integration
def test_demo_in_a_fresh_clone_explains_itself_and_cleans_up(tmp_path):
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, timeout=120)
    changed = [p for p in INSTALL_INPUTS if (ROOT / p).read_bytes() != (clone / p).read_bytes()]
    if changed:
        pytest.skip(f"uncommitted changes to {changed}: a clone would reinstall the shared venv")
    env = {
        k: v for k, v in os.environ.items() if k not in ("MONGODB_URI", "DEMO_WORKDIR", "REDIS_URL")
    }
    env["VENV"] = str(VENV)
    demo = DemoProcess(["./dev.sh", "demo", "--seconds", "60"], clone, env)
    seen: set = set()
    try:

        def trades_stored():
            seen.update(identities(descendants(demo.pid)))
            counts = demo.progress()
            return counts and counts[-1] > 0

        wait_for(trades_stored, 90, interval=0.5, what="stored trades in the demo's progress")
        text = demo.text
        env_file = Path(shlex.split(re.search(r"^  source (.+)$", text, re.M).group(1))[0])
        assert env_file == clone / "var" / "demo" / "env.sh" and env_file.exists()
        example = re.search(r"^  (python -m tasks\.backfill run trades .+)$", text, re.M).group(1)
        assert "celery -A tasks call backfill --kwargs" in text

        done = _side(env_file, example + " --no-progress", clone)
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout.strip().splitlines()[-1])
        assert result["status"] == "filled", result
        read = _side(env_file, f"python -c {shlex.quote(READ_STORES)}", clone)
        assert read.returncode == 0, read.stderr
        during = json.loads(read.stdout)
        assert during["mongodb"]["trades"] > 0 and during["gaps"].get("filled", 0) >= 1
        seen.update(identities(descendants(demo.pid)))
        redis_port = int(re.search(r"redis-cli -p (\d+)", text).group(1))

        assert demo.wait(60 + 60) == 0, demo.text  # --seconds 60, then the Procfile's stop
        wait_for(lambda: not any(alive(i) for i in seen), 5, what="no process left")
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", redis_port), timeout=1).close()
        out = demo.text
        assert "killed" not in out and "Traceback" not in out
        assert not env_file.exists()  # it described services that are gone

        summary = json.loads((clone / "var" / "demo" / "summary.json").read_text())
        for name, n in during["mongodb"].items():
            assert summary["mongodb"].get(name, 0) >= n, (name, summary, during)
        for status, n in during["gaps"].items():
            assert summary["gaps"].get(status, 0) >= n, (status, summary, during)
        assert sum(summary["tasks_run"].values()) > 0  # Flower answered, the workers worked
        assert summary["dead_letters"] == 0
        printed = out[out.index("demo summary") :]
        assert f"trades {summary['mongodb']['trades']:,}" in printed
        assert f"filled {summary['gaps']['filled']:,}" in printed
        assert "MongoDB data stays" in printed
    finally:
        demo.kill_if_running()
        for pid, _ in (i for i in seen if alive(i)):
            os.kill(pid, signal.SIGKILL)
