"""`python -m collector` as a process: config errors exit 2 without a traceback; SIGTERM flushes
and exits 0 within 10 s."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import redis

from localrun.redis_server import free_port
from okxsim.config import SimConfig
from okxsim.server import OkxSim
from tests.feeder_fixtures import wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OKX_", "FEEDER_"))}
    env.update(extra)
    return env


@pytest.mark.parametrize(
    "extra, needle",
    [
        ({"OKX_CHANNELS": "books,nope"}, "unknown channel 'nope'"),
        ({"OKX_CHANNELS": "orders"}, "needs a login"),
        ({"OKX_WS_URL": "ws://x/ws/v5/public"}, "base URL only"),
    ],
)
def test_config_errors_exit_2_without_traceback(extra, needle):
    proc = subprocess.run(
        [sys.executable, "-m", "collector"],
        cwd=ROOT,
        env=run_env(**extra),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert needle in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.integration
def test_sigterm_flushes_and_exits_0(redis_url, tmp_path):
    sim = OkxSim(SimConfig(port=0, instruments=("BTC-USDT",))).start()
    rec = tmp_path / "frames.jsonl"
    try:
        env = run_env(
            REDIS_URL=redis_url,
            OKX_WS_URL=sim.ws_url,
            OKX_REST_URL=sim.rest_url,
            OKX_INSTRUMENTS="BTC-USDT",
            OKX_CHANNELS="books,trades-all",
            FEEDER_ID="proc-test",
            FEEDER_HEALTH_PORT=str(free_port()),
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", "collector", "--record", str(rec)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        client = redis.Redis.from_url(redis_url)
        try:
            wait_for(lambda: client.llen("ingest") > 3, 15, what="tasks published")
        except AssertionError:
            proc.kill()
            raise AssertionError(proc.communicate()[1][-2000:]) from None
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=12)
        assert proc.returncode == 0, err[-2000:]
        assert time.monotonic() - t0 < 10
        assert "feeder stopped" in err and "Traceback" not in err
        assert client.exists("wm:books:BTC-USDT")
        assert rec.stat().st_size > 0
        assert "sign" not in rec.read_text() and "okxsim-secret" not in err
    finally:
        sim.stop()
