"""`./dev.sh demo`: data flows, Ctrl-C stops everything with no process left behind, and a
restarted demo continues with the MongoDB history of the last one."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from localrun.processes import alive, descendants, identities
from tests.demo_process import PROGRESS, DemoProcess
from tests.polling import wait_for

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.integration
def test_demo_shows_data_and_ctrl_c_leaves_no_process(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "MONGODB_URI"}
    env["DEMO_WORKDIR"] = str(tmp_path)
    demo = DemoProcess([sys.executable, "-m", "localrun.demo"], ROOT, env)
    seen: set = set()
    try:

        def data_flowing():
            seen.update(identities(descendants(demo.pid)))
            counts = demo.progress()
            return counts and counts[-1] > 0

        wait_for(data_flowing, 90, interval=0.5, what="stored trades in the demo's progress")
        text = demo.text
        assert "MongoDB wire protocol: nx-27017" in text or "real MongoDB" in text
        web = re.search(
            r"dashboard\s+(http://127\.0\.0\.1:\d+)/\s+user demo\s+password (\S+)", text
        )
        assert web, text

        # the one web port: Flower and the API both refuse a request without the credentials
        # (web answers 503 for /flower/ while its Flower child is still starting: wait that out)
        def refused(path: str) -> int | None:
            with pytest.raises(urllib.error.HTTPError) as denied:
                urllib.request.urlopen(web.group(1) + path, timeout=5)
            return None if denied.value.code == 503 else denied.value.code

        for path in ("/flower/api/workers", "/api/v1/ticker/BTC-USDT"):
            code = wait_for(lambda p=path: refused(p), 30, interval=0.5, what=f"{path} answering")
            assert code == 401, path
        login = base64.b64encode(f"demo:{web.group(2)}".encode()).decode()
        asked = urllib.request.Request(
            web.group(1) + "/api/v1/ticker/BTC-USDT", headers={"Authorization": f"Basic {login}"}
        )

        def answered() -> bool:
            try:
                return urllib.request.urlopen(asked, timeout=5).status == 200
            except urllib.error.HTTPError as e:  # 404 until the first ticker is stored
                assert e.code == 404, e
                return False

        wait_for(
            answered,
            30,
            interval=0.5,
            what="the demo's API answering with its printed credentials",
        )
        assert "tasks.export trades BTC-USDT" in text
        for hint in ("/healthz", "redis-cli -p", "collector status", "celery -A tasks call"):
            assert hint in text
        redis_port = int(re.search(r"redis-cli -p (\d+)", text).group(1))
        seen.update(identities(descendants(demo.pid)))
        assert len(seen) >= 8  # redis, nx-27017, honcho + its 4 helpers, web, feeder, worker...

        assert demo.interrupt(45) == 0, demo.text  # Ctrl-C
        wait_for(lambda: not any(alive(i) for i in seen), 5, what="no process left")
        import socket

        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", redis_port), timeout=1).close()
        assert "killed" not in demo.text  # nothing needed SIGKILL
    finally:
        demo.kill_if_running()
        for pid, _ in (i for i in seen if alive(i)):
            os.kill(pid, signal.SIGKILL)


def _demo_until(workdir: Path, enough, what: str) -> str:
    """Run the demo in `workdir` until `enough(progress counts)` holds, then Ctrl-C it; its
    output. Fails if it exits early or stops uncleanly."""
    env = {k: v for k, v in os.environ.items() if k not in ("MONGODB_URI", "MONGODB_DB")}
    env["DEMO_WORKDIR"] = str(workdir)
    demo = DemoProcess([sys.executable, "-m", "localrun.demo"], ROOT, env)
    try:
        wait_for(lambda: bool((c := demo.progress()) and enough(c)), 90, interval=0.5, what=what)
        assert demo.interrupt(45) == 0, demo.text
        return demo.text
    finally:
        demo.kill_if_running()


@pytest.mark.integration
def test_a_restarted_demo_continues_with_its_mongodb_history(tmp_path):
    _demo_until(tmp_path, lambda counts: counts[-1] > 0, "the first demo's stored trades")
    first = json.loads((tmp_path / "summary.json").read_text())["mongodb"]
    assert first["trades"] > 0
    out = _demo_until(
        tmp_path,
        lambda counts: counts[-1] > first["trades"],
        "the second demo's new trades on top of the first's",
    )
    assert "nx-27017" in out and "data in " + str(tmp_path / "mongo" / "data") in out
    counts = [int(m.group(1)) for m in PROGRESS.finditer(out)]
    assert counts[0] >= first["trades"]  # its first line, before it stored anything new
    second = json.loads((tmp_path / "summary.json").read_text())["mongodb"]
    # okxsim restarted with a new seed: its new trade ids are stored, not refused as duplicates
    assert second["trades"] > first["trades"]
    for name, n in first.items():
        assert second.get(name, 0) >= n, (name, first, second)
    assert "MongoDB data stays in" in out
