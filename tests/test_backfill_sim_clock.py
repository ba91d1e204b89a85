"""okxsim's clock speed (for 'ten minutes of simulated trading' in seconds): simulated time runs
`speed` times faster, market events and the bot scale with it, signatures still use wall time."""

from __future__ import annotations

import time

import pytest

from okxsim import clock as clock_mod
from okxsim.account import Account
from okxsim.clock import SimClock
from okxsim.config import SimConfig


def test_clock_runs_speed_times_faster_and_never_back(monkeypatch):
    t = {"mono": 100.0}
    monkeypatch.setattr(clock_mod.time, "monotonic", lambda: t["mono"])
    monkeypatch.setattr(clock_mod.time, "time", lambda: 1_700_000_000.0)
    c = SimClock(speed=40)
    assert c.now_ms() == 1_700_000_000_000
    t["mono"] += 15.0  # fifteen real seconds
    assert c.now_ms() == 1_700_000_000_000 + 600_000  # ten simulated minutes
    assert c.wall_s() == 1_700_000_000.0  # signatures: the real clock
    with pytest.raises(ValueError):
        SimClock(speed=0)
    with pytest.raises(ValueError):
        SimConfig(clock_speed=-1)


def test_bot_interval_is_simulated_time():
    cfg = SimConfig(tick_ms=25, bot_interval_s=0.5, clock_speed=1)
    fast = SimConfig(tick_ms=25, bot_interval_s=0.5, clock_speed=20)
    assert Account(cfg, {}, SimClock()).every == 20  # every 20 ticks of 25 ms
    assert Account(fast, {}, SimClock(20)).every == 1  # 0.5 simulated s = one 25 ms tick


@pytest.mark.integration
def test_fast_sim_trades_speed_times_more_per_real_second_and_accepts_signed_rest():
    import urllib.request

    import orjson

    from okx.rest.client import RestClient
    from okx.signing import Credentials
    from okxsim.server import OkxSim
    from tests.polling import wait_for

    with OkxSim(SimConfig(port=0, instruments=("BTC-USDT",), tick_ms=25, clock_speed=30)) as sim:
        t0, s0 = time.monotonic(), sim.call(lambda ex: ex.clock.now_ms())
        wait_for(lambda: time.monotonic() - t0 > 2.0, 5)
        sim_elapsed = sim.call(lambda ex: ex.clock.now_ms()) - s0
        assert 45_000 < sim_elapsed < 80_000  # ~30x of ~2 s
        with urllib.request.urlopen(sim.rest_url + "/sim/truth/trades?instId=BTC-USDT") as r:
            trades = orjson.loads(r.read())["data"]
        span = int(trades[-1]["ts"]) - int(trades[0]["ts"])
        assert span > 40_000  # trade times follow the fast clock
        client = RestClient(
            sim.rest_url, credentials=Credentials("okxsim-key", "okxsim-secret", "okxsim-pass")
        )
        assert client.get("/api/v5/account/balance", signed=True)  # wall-clock signature ok
