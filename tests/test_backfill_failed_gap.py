"""A manual backfill that fails leaves its gap `failed` with the reason (never open and orphaned),
and the beat sweep retries it with backoff until it is filled, or unrepairable after
BACKFILL_MAX_ATTEMPTS failures. Real redis-server, okxsim, pymongo against a port where nothing
listens (the outage), mongomock (the recovered MongoDB)."""

from __future__ import annotations

import urllib.request

import mongomock
import orjson
import pytest
import redis

from core import settings as settings_mod
from core.gaps import Gap
from core.settings import WorkerSettings as Settings
from localrun.redis_server import free_port
from okxsim.config import SimConfig
from okxsim.server import OkxSim
from tasks import clients
from tasks.backfill import cli, context
from tasks.backfill import sweep as sweep_mod
from tasks.backfill.tasks import backfill as backfill_task
from tasks.backfill.tasks import make_repairer
from tests.polling import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def wired(redis_url):
    sim = OkxSim(
        SimConfig(port=0, instruments=("BTC-USDT",), tick_ms=25, clock_speed=20, bot_interval_s=0)
    ).start()
    r = redis.Redis.from_url(redis_url)
    settings = Settings(
        redis_url=redis_url,
        okx_rest_url=sim.rest_url,
        books_sample_ms=0,
        books_retention_s=0,
        backfill_max_attempts=3,
        backfill_retry_s=1.0,
    )
    settings_mod.use(settings)
    down = clients.pymongo_client(f"mongodb://127.0.0.1:{free_port()}/", 200)
    clients.install(mongo=down, redis=r)
    context.install(ledger_redis=r)
    try:
        yield sim, r, settings
    finally:
        context.install()
        clients.install()
        settings_mod.use(None)
        down.close()
        r.close()
        sim.stop()


def _window(sim) -> tuple[int, int]:
    def trades():
        with urllib.request.urlopen(f"{sim.rest_url}/sim/truth/trades?instId=BTC-USDT") as resp:
            return orjson.loads(resp.read())["data"]

    rows = wait_for(lambda: (t := trades()) and len(t) > 60 and t, 20, 0.2, "sim trades")
    return int(rows[10]["ts"]), int(rows[-10]["ts"])


def _gap(r, gap_id: str) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in r.hgetall(f"gap:{gap_id}").items()}


def _mongo_back() -> None:
    clients.install(mongo=mongomock.MongoClient(), redis=clients._installed["redis"])
    clients._indexes_done = True  # mongomock's unique-index checks are O(n) per insert


def test_a_failed_manual_run_is_marked_failed_and_the_sweep_retries_it(wired, capsys):
    sim, r, settings = wired
    start, end = _window(sim)
    args = ["run", "trades", "BTC-USDT", "--start", str(start), "--end", str(end), "--no-progress"]
    assert cli.main(args) == 1

    out, err = capsys.readouterr()
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "gap 1 failed: cannot reach MongoDB" in err and "repair 1" in err
    result = orjson.loads(out.strip().splitlines()[-1])
    gap = _gap(r, "1")
    assert result["status"] == gap["status"] == "failed"
    assert "ServerSelectionTimeoutError" in gap["reason"] and gap["failures"] == "1"
    assert r.zscore("gaps:open", "1") is not None  # still to repair, not forgotten
    retry_at = int(gap["retry_at"])
    assert retry_at == result["retry_at_ms"] > int(gap["updated_ms"])
    # a hash that says `failed` is a Gap (core/gaps.py) like any other
    assert Gap.from_fields(r.hgetall("gap:1")).status == "failed"

    # `gaps` lists it with its status and reason
    assert cli.main(["gaps"]) == 0
    listed = orjson.loads(capsys.readouterr().out.strip().splitlines()[0])
    assert (listed["status"], listed["reason"]) == ("failed", gap["reason"])

    sent: list[str] = []

    def sweep(now: int) -> dict:
        return sweep_mod.sweep(
            context.ledger(),
            now_ms=now,
            settings=settings,
            send_repair=sent.append,
            send_snapshot=lambda: None,
        )

    assert sweep(retry_at - 1)["retried_failed"] == 0 and sent == []  # backoff not over
    assert sweep(retry_at)["retried_failed"] == 1 and sent == ["1"]
    assert sweep(retry_at + 1000)["retried_failed"] == 0 and sent == ["1"]  # sent once

    _mongo_back()
    res = make_repairer().run("1")  # what the re-sent repair_gap task does
    assert res.status == "filled" and res.written > 0
    assert _gap(r, "1")["status"] == "filled" and r.zscore("gaps:open", "1") is None


def test_a_failing_gap_ends_unrepairable_after_the_attempt_limit(wired, capsys):
    sim, r, settings = wired
    start, end = _window(sim)
    assert (
        cli.main(
            ["run", "trades", "BTC-USDT", "--start", str(start), "--end", str(end), "--no-progress"]
        )
        == 1
    )
    assert cli.main(["repair", "1", "--no-progress"]) == 1  # failure 2: failed again
    assert _gap(r, "1")["status"] == "failed" and _gap(r, "1")["failures"] == "2"
    assert cli.main(["repair", "1", "--no-progress"]) == 0  # failure 3 = the limit
    gap = _gap(r, "1")
    assert gap["status"] == "unrepairable" and gap["reason"].startswith("gave up after 3 failed")
    assert r.zscore("gaps:open", "1") is None
    capsys.readouterr()


def test_ctrl_c_marks_the_gap_failed_without_counting_a_failure(wired, capsys, monkeypatch):
    sim, r, settings = wired
    _mongo_back()
    start, end = _window(sim)

    def interrupt(self, step, page, written):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli.Progress, "__call__", interrupt)
    args = ["run", "trades", "BTC-USDT", "--start", str(start), "--end", str(end), "--no-progress"]
    assert cli.main(args) == 130
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "interrupted: gap 1" in err
    gap = _gap(r, "1")
    assert gap["status"] == "failed" and gap["reason"] == "interrupted (Ctrl-C)"
    assert gap.get("failures", "0") == "0" and gap["cursor"]  # the page before Ctrl-C is kept


def test_the_backfill_task_leaves_a_failed_gap_too(wired):
    sim, r, settings = wired
    start, end = _window(sim)
    out = backfill_task(channel="trades", instId="BTC-USDT", start=start, end=end)
    assert out["status"] == "failed" and "ServerSelectionTimeoutError" in out["reason"]
    assert _gap(r, out["gap"])["status"] == "failed"
