"""`python -m web` as a real process on a free port: the API's health, Flower proxied under
/flower behind its credentials, a Flower child that dies is restarted and reported, SIGTERM ends
everything; no credentials at all is exit 2. And FlowerChild's give-up rule on a fake child."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import orjson
import pytest

from localrun.processes import alive, identity
from localrun.redis_server import free_port
from tests.polling import wait_for
from web.flower import FlowerChild

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "pw-for-the-process-test"


def _get(url: str, auth: tuple[str, str] | None = None) -> tuple[int, bytes, dict]:
    req = urllib.request.Request(url)
    if auth:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)
    except OSError:
        return 0, b"", {}


def _env(redis_url: str, port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWER_", "WEB_"))}
    return env | {
        "PYTHONPATH": str(ROOT),
        "PORT": str(port),
        "REDIS_URL": redis_url,
        "MONGODB_URI": "mongodb://127.0.0.1:9",  # nothing there: health says so, nothing breaks
        "MONGODB_TIMEOUT_MS": "300",
        **extra,
    }


@pytest.mark.integration
def test_python_m_web_serves_health_and_proxies_flower(redis_url):
    port = free_port()
    env = _env(redis_url, port, WEB_USER="ops", WEB_PASSWORD=PASSWORD)
    proc = subprocess.Popen(
        [sys.executable, "-m", "web"], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _get(base + "/api/v1/health")[0] in (200, 503), 30, what="web up")
        code, body, _ = _get(base + "/api/v1/health")
        health = orjson.loads(body)
        assert code == 503 and health["verdict"] == "down"  # no feeder, no worker in this test
        assert any("no live feeder" in r for r in health["reasons"])
        # Flower answers through the proxy, under its own prefix, behind the same credentials
        wait_for(lambda: _get(base + "/flower/healthcheck")[0] == 200, 60, what="flower up")
        assert _get(base + "/flower/api/workers")[0] == 401
        assert _get(base + "/flower/api/workers", ("ops", "wrong"))[0] == 401
        code, body, headers = _get(base + "/flower/", ("ops", PASSWORD))
        assert code == 200 and b"Flower" in body and 'href="/flower/' in body.decode()
        assert _get(base + "/api/v1/gaps", ("ops", PASSWORD))[0] == 200
        flower = orjson.loads(_get(base + "/api/v1/health")[1])["flower"]
        assert flower["state"] == "up" and flower["restarts"] == 0
        # the child dies: health reports it, the supervisor brings it back
        os.kill(flower["pid"], signal.SIGKILL)

        def restarted():
            f = orjson.loads(_get(base + "/api/v1/health")[1])["flower"]
            return f if f["restarts"] == 1 and f["state"] == "up" else None

        again = wait_for(restarted, 60, interval=0.2, what="flower restarted")
        child = identity(again["pid"])
        assert child is not None
        assert again["pid"] != flower["pid"] and again["last_exit"] == -signal.SIGKILL
        assert wait_for(lambda: _get(base + "/flower/healthcheck")[0] == 200, 30)
        # Heroku's SIGTERM: the web process and its Flower child end
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        wait_for(lambda: not alive(child), 10, what="flower child gone")
        assert PASSWORD not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.integration
def test_python_m_web_refuses_to_start_without_any_credentials(redis_url):
    done = subprocess.run(
        [sys.executable, "-m", "web"],
        cwd=ROOT,
        env=_env(redis_url, free_port()),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "refusing to start Flower without authentication" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.integration
def test_a_flower_child_that_keeps_exiting_is_given_up():
    gave_up = []

    async def run() -> FlowerChild:
        child = FlowerChild(
            command=lambda port: [sys.executable, "-c", "raise SystemExit(3)"],
            give_up=lambda: gave_up.append(True),
            max_restarts=2,
            first_pause_s=0.01,
        )
        await child.start()
        assert child._task is not None
        await asyncio.wait_for(child._task, 20)
        await child.stop()
        return child

    child = asyncio.run(run())
    assert gave_up == [True]
    assert child.restarts == 3 and child.last_exit == 3
