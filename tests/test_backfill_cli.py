"""`python -m tasks.backfill`: a long range backfilled in this process with a progress bar, the
request visible in the ledger as a manual gap; bad arguments refused with exit status 2."""

from __future__ import annotations

import urllib.request

import fakeredis
import mongomock
import orjson
import pytest

from core import settings as settings_mod
from core.settings import WorkerSettings as Settings
from okxsim.config import SimConfig
from okxsim.server import OkxSim
from tasks import clients
from tasks.backfill import context
from tasks.backfill.cli import main
from tests.polling import wait_for


@pytest.fixture
def wired():
    sim = OkxSim(
        SimConfig(port=0, instruments=("BTC-USDT",), tick_ms=25, clock_speed=20, bot_interval_s=0)
    ).start()
    r, mongo = fakeredis.FakeRedis(), mongomock.MongoClient()
    settings_mod.use(Settings(okx_rest_url=sim.rest_url, books_sample_ms=0, books_retention_s=0))
    clients.install(mongo=mongo, redis=r)
    clients._indexes_done = True  # mongomock's unique-index checks are O(n) per insert
    context.install(ledger_redis=r)
    try:
        yield sim, r, mongo["okex"]
    finally:
        context.install()
        clients.install()
        settings_mod.use(None)
        sim.stop()


def truth(sim):
    with urllib.request.urlopen(f"{sim.rest_url}/sim/truth/trades?instId=BTC-USDT") as resp:
        return orjson.loads(resp.read())["data"]


@pytest.mark.integration
def test_run_backfills_a_range_with_a_progress_bar_and_records_a_manual_gap(wired, capsys):
    sim, r, db = wired
    wait_for(lambda: len(truth(sim)) > 800, 20, interval=0.2, what="history")
    rows = truth(sim)
    start, end = int(rows[100]["ts"]), int(rows[-100]["ts"])
    assert main(["run", "trades", "BTC-USDT", "--start", str(start), "--end", str(end)]) == 0
    out, err = capsys.readouterr()
    result = orjson.loads(out.strip().splitlines()[-1])
    want = sorted(int(t["tradeId"]) for t in rows if start <= int(t["ts"]) <= end)
    assert result["status"] == "filled" and result["records"] == len(want)
    assert sorted(int(d["tradeId"]) for d in db.trades.find()) == want
    assert "gap 1 trades BTC-USDT" in err and "100%" in err  # the tqdm bar
    gap = {k.decode(): v.decode() for k, v in r.hgetall("gap:1").items()}
    assert (gap["cause"], gap["status"], gap["written"]) == ("manual", "filled", str(len(want)))
    # listing shows it; a bad request is refused with status 2
    assert main(["gaps", "--all"]) == 0
    assert '"cause":"manual"' in capsys.readouterr().out
    assert main(["run", "trades", "BTC-USDT", "--start", "later", "--end", str(end)]) == 2
    assert main(["run", "klines", "BTC-USDT"]) == 2
