"""Ingest decisions (handle_batch), dead letters, replay, configuration and clients, without a worker."""

from __future__ import annotations

import os

import fakeredis
import mongomock
import pytest
import redis.exceptions
from pymongo.errors import AutoReconnect, ServerSelectionTimeoutError

import celeryconfig
from core import keys
from core import settings as settings_mod
from core.contract import INGEST_TASKS, KINDS
from core.settings import WorkerSettings as Settings
from okx.backoff import backoff_delay
from tasks import app as app_mod
from tasks import clients
from tasks.app import app
from tasks.deadletters import DeadLetters
from tasks.deadletters import main as deadletters_main
from tasks.ingest import handle_batch
from tasks.writers import Store
from tests.workers_fixtures import Flaky, batch, order, ticker, trade

S = Settings(retry_max=3, retry_base_s=1.0, retry_cap_s=8.0)


@pytest.fixture
def db():
    return mongomock.MongoClient()["okex"]


@pytest.fixture
def r():
    return fakeredis.FakeRedis()


def run(kind, payload, db, r, *, retries=0, store=None, dead=None, settings=S):
    return handle_batch(
        kind,
        payload,
        store=store or Store(db, r, settings),
        dead=dead or DeadLetters(db, r),
        settings=settings,
        task_name=INGEST_TASKS[kind],
        task_id="tid-1",
        retries=retries,
    )


# ----- bad input goes to dead_letters at once ----------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        "not a dict",
        {"v": 99, "kind": "trades", "records": []},
        {"v": 1, "kind": "tickers", "records": []},  # sent to the trades task
        {"v": 1, "kind": "trades", "records": [1, 2]},
    ],
)
def test_bad_batch_is_dead_lettered_at_once(payload, db, r):
    out = run("trades", payload, db, r)
    assert out.retry_in is None and out.dead_letter == "tid-1"
    d = db["dead_letters"].find_one()
    assert (
        d["reason"] == "bad_batch" and d["task"] == "tasks.ingest.trades" and d["args"] == [payload]
    )
    assert d["exc_type"] == "BadBatch" and d["retries"] == 0 and d["status"] == "new" and d["time"]
    assert db["trades"].count_documents({}) == 0


def test_bad_records_are_dead_lettered_and_good_ones_written(db, r):
    payload = batch("trades", [trade(1), {"instId": "BTC-USDT", "px": "1"}, trade(2)])
    out = run("trades", payload, db, r)
    assert out.written["inserted"] == 2 and out.dead_letter == "tid-1:bad"
    d = db["dead_letters"].find_one({"_id": "tid-1:bad"})
    assert d["reason"] == "bad_records" and d["records"] == 1
    assert d["args"][0]["records"] == [{"instId": "BTC-USDT", "px": "1"}]
    assert d["args"][0]["kind"] == "trades" and d["args"][0]["v"] == 1  # replayable envelope


def test_non_transient_error_is_dead_lettered(db, r):
    class Broken:
        def write_many(self, *a, **kw):
            raise TypeError("a bug")

    out = run("tickers", batch("tickers", [ticker()]), db, r, store=Broken())
    assert out.retry_in is None and db["dead_letters"].find_one()["reason"] == "error"


# ----- transient errors retry with capped, jittered backoff ----------------------------------------------


@pytest.mark.parametrize(
    "exc",
    [
        AutoReconnect("x"),
        ServerSelectionTimeoutError("x"),
        redis.exceptions.ConnectionError("x"),
        redis.exceptions.TimeoutError("x"),
        redis.exceptions.BusyLoadingError("x"),
    ],
)
def test_transient_errors_retry_then_dead_letter(exc, db, r):
    class Down:
        def write_many(self, *a, **kw):
            raise exc

    payload = batch("orders", [order()])
    for n in range(S.retry_max):
        out = run("orders", payload, db, r, retries=n, store=Down())
        cap = min(S.retry_cap_s, S.retry_base_s * 2**n)
        assert cap / 2 <= out.retry_in <= cap and out.dead_letter is None
    assert db["dead_letters"].count_documents({}) == 0
    out = run("orders", payload, db, r, retries=S.retry_max, store=Down())
    assert out.retry_in is None
    d = db["dead_letters"].find_one()
    assert d["reason"] == "retries_exhausted" and d["retries"] == S.retry_max
    assert d["exc_type"] == type(exc).__name__ and d["args"] == [payload]


def test_backoff_is_exponential_capped_and_jittered():
    # the ingest retry countdown: okx.backoff's policy with the default INGEST_RETRY_* bounds
    assert [backoff_delay(n, base=2, cap=300, rng=lambda: 1.0) for n in range(10)] == [
        2,
        4,
        8,
        16,
        32,
        64,
        128,
        256,
        300,
        300,
    ]
    assert backoff_delay(3, base=2, cap=300, rng=lambda: 0.0) == 8


def test_dead_letter_falls_back_to_the_redis_spool_then_keeps_the_message(db, r):
    flaky_db = Flaky(db, [AutoReconnect("mongo down")])
    out = run("trades", {"v": 0}, flaky_db, r, store=Store(db, r, S), dead=DeadLetters(flaky_db, r))
    assert out.dead_letter == "tid-1" and r.llen(keys.DEADLETTER_SPOOL) == 1
    assert DeadLetters(db, r).drain() == 1 and r.llen(keys.DEADLETTER_SPOOL) == 0
    assert db["dead_letters"].find_one()["reason"] == "bad_batch"

    flaky_r = Flaky(r, [redis.exceptions.ConnectionError("redis down")])
    out = run("trades", {"v": 0}, flaky_db, r, dead=DeadLetters(flaky_db, flaky_r))
    assert out.retry_in == S.retry_cap_s and out.dead_letter is None  # nowhere to store: keep it


# ----- replay ------------------------------------------------------------------------------------------------


class FakeApp:
    def __init__(self):
        self.sent = []

    def send_task(self, name, args, kwargs):
        self.sent.append((name, args, kwargs))
        return type("R", (), {"id": f"new-{len(self.sent)}"})()


def test_replay_resends_by_name_and_marks_replayed(db, r):
    good = batch("orders", [order()])
    for tid, payload in (("a", good), ("b", {"v": 0})):
        handle_batch(
            "orders",
            payload,
            store=type("Down", (), {"write_many": _raise_reconnect})(),
            dead=DeadLetters(db, r),
            settings=S,
            task_name=INGEST_TASKS["orders"],
            task_id=tid,
            retries=S.retry_max,
        )
    dl, fake = DeadLetters(db, r), FakeApp()
    assert [d["_id"] for d in dl.list()] and len(dl.list()) == 2
    assert dl.replay(fake) == ["new-1"]  # --all skips bad_batch
    assert fake.sent == [("tasks.ingest.orders", [good], {})]
    assert db["dead_letters"].find_one({"_id": "a"})["status"] == "replayed"
    assert dl.replay(fake, ids=["b"]) == ["new-2"]  # explicit id: replayed anyway
    with pytest.raises(SystemExit):
        dl.replay(fake, ids=["nope"])


def _raise_reconnect(*a, **kw):
    raise AutoReconnect("down")


def test_deadletters_command_lists_and_replays(db, r, monkeypatch, capsys):
    clients.install(mongo=db.client, redis=r)
    try:
        DeadLetters(db, r).put(
            __import__("tasks.deadletters", fromlist=["x"]).make_doc(
                task="tasks.ingest.trades",
                task_id="z",
                args=[batch("trades", [trade(1)])],
                reason="retries_exhausted",
                exc=AutoReconnect("x"),
                retries=10,
            )
        )
        assert deadletters_main(["list"]) == 0
        assert "tasks.ingest.trades" in capsys.readouterr().out
        sent = []
        monkeypatch.setattr(
            app,
            "send_task",
            lambda name, args, kwargs: sent.append(name) or type("R", (), {"id": "n1"})(),
        )
        assert deadletters_main(["replay", "--all"]) == 0
        assert sent == ["tasks.ingest.trades"] and "replayed 1" in capsys.readouterr().out
    finally:
        clients.install()


# ----- configuration ------------------------------------------------------------------------------------------


def test_tasks_are_registered_under_the_contract_names_and_routed():
    for kind in KINDS:
        task = app.tasks[INGEST_TASKS[kind]]
        assert task.acks_late and task.reject_on_worker_lost and task.ignore_result
        assert app.amqp.router.route({}, INGEST_TASKS[kind])["queue"].name == "ingest"
    assert app.amqp.router.route({}, "tasks.backfill.repair_gap")["queue"].name == "backfill"


def test_no_data_loss_settings():
    c = app.conf
    assert c.task_acks_late and c.task_reject_on_worker_lost
    assert c.accept_content == ["json"] and c.task_serializer == "json"
    assert c.result_backend is None and c.task_ignore_result
    assert c.broker_connection_retry_on_startup is True
    assert c.worker_cancel_long_running_tasks_on_connection_loss is True
    assert 0 < c.worker_soft_shutdown_timeout < 30 and c.worker_enable_soft_shutdown_on_idle
    assert c.worker_prefetch_multiplier >= 1
    s = settings_mod.current()
    vt = c.broker_transport_options["visibility_timeout"]
    assert vt > s.retry_cap_s + s.task_time_limit_s
    assert s.retry_cap_s < vt and c.redbeat_redis_url == c.broker_url
    assert c.beat_scheduler == "redbeat.RedBeatScheduler"
    # Every periodic job runs on the backfill queue (never delays live data), the history
    # drain on its own, and each expires before its next run, so a backlog while workers are
    # down never piles up copies of the same job.
    assert celeryconfig.beat_schedule
    for name, entry in celeryconfig.beat_schedule.items():
        assert entry["options"]["queue"] == ("history" if name == "history-drain" else "backfill")
        assert 0 < entry["options"]["expires"] < entry["schedule"]
    # A killed beat must not block its replacement for RedBeat's default 25 minutes.
    assert c.redbeat_lock_timeout <= 5 * c.beat_max_loop_interval
    assert c.task_publish_retry_policy["max_retries"] > 3


def test_settings_from_env_and_redacted_repr():
    s = Settings.from_env(
        {
            "REDIS_URL": "rediss://u:secret@h:1/0",
            "MONGODB_URI": "mongodb://a:pw@m/x",
            "TRADES_CAP": "7",
            "INGEST_RETRY_BASE_S": "0.5",
        }
    )
    assert s.trades_cap == 7 and s.retry_base_s == 0.5 and s.mongodb_db == "okex"
    assert s.state_url == "rediss://u:secret@h:1/0"
    assert "secret" not in repr(s) and "pw" not in repr(s)
    with pytest.raises(ValueError, match="TRADES_CAP"):
        Settings.from_env({"TRADES_CAP": "many"})


def test_clients_are_recreated_in_a_new_process(monkeypatch):
    clients.install()
    settings_mod.use(
        Settings(mongodb_uri="mongodb://127.0.0.1:1", redis_url="redis://127.0.0.1:1/0")
    )
    try:
        m1, r1 = clients.mongo_client(), clients.state_redis()
        assert clients.mongo_client() is m1
        monkeypatch.setattr(clients, "_pid", -1)  # as after a fork
        assert clients.mongo_client() is not m1 and clients.state_redis() is not r1
        before = clients.mongo_client()
        clients._open_after_fork()  # worker_process_init handler
        assert clients.mongo_client() is not before
    finally:
        clients.close()
        settings_mod.use(None)


def test_migrate_creates_indexes(capsys):
    client = mongomock.MongoClient()
    clients.install(mongo=client)
    try:
        from tasks.migrate import main

        assert main([]) == 0
        assert "natural_key_source" in client["okex"]["candles"].index_information()
        assert "migrate:" in capsys.readouterr().out
    finally:
        clients.install()


def test_celery_finds_the_app_both_ways():
    from celery.app.utils import find_app

    assert find_app("tasks") is app and find_app("tasks.app") is app and app_mod is not None
    assert os.path.exists(os.path.join(os.path.dirname(celeryconfig.__file__), "celeryconfig.py"))


def test_task_result_is_one_short_line_of_counts_and_dead_letters(db, r):
    from tasks.ingest import summary

    good = [trade(1), trade(2)]
    out = run("trades", batch("trades", good + [{"instId": "BTC-USDT"}]), db, r)
    line = summary(out)
    assert isinstance(line, str) and len(line) < 200
    assert line.startswith("trades 2 rec 2 new 0 dup 2 state")
    assert "dead letters tid-1:bad" in line
    again = summary(run("trades", batch("trades", good), db, r))
    assert again == "trades 2 rec 0 new 2 dup 2 state"  # a redelivery stores nothing new
