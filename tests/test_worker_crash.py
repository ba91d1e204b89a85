"""Real `celery -A tasks worker` processes (prefork, -c 1) killed in the middle of a batch.

The worker writes MongoDB history through pymongo to the harness's wire-protocol server (the
`mongodb_uri` fixture: nx-27017, a database of this test's own), and state to the real test
Redis; the test reads both directly. A
test-only hook (OKX_TEST_PAUSE_AFTER / OKX_TEST_PAUSE_FILE) makes the batch stop after its first
records until the test has killed something.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from celery import Celery
from pymongo import MongoClient

from core import keys
from core.contract import INGEST_QUEUE, INGEST_TASKS
from tests.workers_fixtures import T0, batch, children, decode, kill_quietly, order, wait_for

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parent.parent
CELERY = str(Path(sys.executable).with_name("celery"))
N = 10  # orders in the batch
PAUSE_AT = 3  # the worker stops after this many


@pytest.fixture
def world(redis_url, mongodb_uri, tmp_path):
    """Broker and state on the test Redis, history in MongoDB, a pause file, a sender."""
    state_url = redis_url.replace("/0", "/1")
    pause = tmp_path / "pause"
    procs: list[subprocess.Popen] = []
    sender = Celery("feeder", broker=redis_url)
    mongo: MongoClient = MongoClient(mongodb_uri, serverSelectionTimeoutMS=5000)
    db = mongo.get_default_database()

    def start(**extra_env) -> subprocess.Popen:
        env = {
            **{k: v for k, v in os.environ.items() if k != "MONGO_CLIENT_FACTORY"},
            "REDIS_URL": redis_url,
            "STATE_REDIS_URL": state_url,
            "MONGODB_URI": mongodb_uri,
            "MONGODB_DB": db.name,
            "PYTHONPATH": str(ROOT),
            "BOOKS_RETENTION_S": "0",
            "OKX_TEST_PAUSE_AFTER": str(PAUSE_AT),
            "OKX_TEST_PAUSE_FILE": str(pause),
            "INGEST_RETRY_BASE_S": "0.1",
            "INGEST_RETRY_CAP_S": "0.5",
            **extra_env,
        }
        log = open(tmp_path / f"worker{len(procs)}.log", "w")
        p = subprocess.Popen(
            [
                CELERY,
                "-A",
                "tasks",
                "worker",
                "-P",
                "prefork",
                "-c",
                "1",
                "-Q",
                "ingest,history,backfill",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "-l",
                "INFO",
                "-n",
                f"crash{len(procs)}@%h",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        procs.append(p)
        return p

    def send_orders():
        pause.touch()
        events = [order(str(i), T0 + i, "filled") for i in range(N)]
        sender.send_task(INGEST_TASKS["orders"], args=[batch("orders", events)], queue=INGEST_QUEUE)

    w = type("World", (), {})()
    w.start, w.send_orders, w.pause, w.tmp = start, send_orders, pause, tmp_path
    w.broker, w.state = redis.Redis.from_url(redis_url), redis.Redis.from_url(state_url)
    w.orders = lambda: db["order"].count_documents({})
    w.logs = lambda: "\n".join(p.read_text() for p in sorted(tmp_path.glob("worker*.log")))
    yield w
    for p in procs:
        if p.poll() is None:
            kill_quietly(-p.pid, signal.SIGKILL)  # this test's own process group
            p.wait(10)
    sender.close()
    mongo.close()


def paused_child(w, worker: subprocess.Popen) -> int:
    """Wait until the pool child stopped mid-batch; return its pid."""
    wait_for(
        lambda: Path(str(w.pause) + ".reached").exists() or worker.poll() is not None,
        timeout=30,
        what="the batch to reach its pause",
    )
    assert worker.poll() is None, w.logs()
    (kids,) = [children(worker.pid)]
    assert len(kids) == 1, kids
    assert w.orders() == PAUSE_AT and int(w.state.get(keys.ORDER_COUNTER)) == PAUSE_AT
    return kids[0]


def assert_stored_exactly_once(w):
    wait_for(
        lambda: (
            w.orders() == N and w.broker.llen(INGEST_QUEUE) == 0 and w.broker.hlen("unacked") == 0
        ),
        timeout=30,
        what="the redelivered batch",
    )
    assert int(w.state.get(keys.ORDER_COUNTER)) == N, w.logs()
    numbered = {decode(w.state.hgetall(keys.order_key(n)))["ordId"] for n in range(1, N + 1)}
    assert numbered == {str(i) for i in range(N)} and not w.state.exists(keys.order_key(N + 1))


def test_pool_child_sigkilled_mid_batch_is_redelivered_and_stored_once(world):
    w = world
    worker = w.start()
    w.send_orders()
    child = paused_child(w, worker)
    os.kill(child, signal.SIGKILL)  # OOM-killer style
    Path(str(w.pause) + ".held").unlink()
    assert_stored_exactly_once(w)
    assert "WorkerLostError" in w.logs() or "Worker exited prematurely" in w.logs(), w.logs()


def test_heroku_sigterm_to_every_process_restores_the_batch(world):
    # Heroku: SIGTERM to all processes of the dyno, SIGKILL 30 s later. REMAP_SIGTERM=SIGQUIT
    # makes it Celery's cold shutdown: soft phase (2 s here, 20 s in production), then the
    # unacked message goes back to the queue.
    w = world
    worker = w.start(REMAP_SIGTERM="SIGQUIT", CELERY_SOFT_SHUTDOWN_TIMEOUT="2")
    w.send_orders()
    paused_child(w, worker)
    t0 = time.monotonic()
    os.killpg(worker.pid, signal.SIGTERM)
    worker.wait(timeout=28)  # inside Heroku's grace period
    took = time.monotonic() - t0
    Path(str(w.pause) + ".held").unlink(missing_ok=True)
    assert w.broker.llen(INGEST_QUEUE) + w.broker.hlen("unacked") == 1, w.logs()
    assert w.orders() == PAUSE_AT
    w.start()  # the dyno comes back
    assert_stored_exactly_once(w)
    assert took < 28


def test_whole_worker_sigkilled_is_redelivered_after_the_visibility_timeout(world):
    # Everything killed at once (no chance to restore): the message stays in `unacked` until the
    # visibility timeout, then a worker's restore sweep requeues it. Short values, tests only.
    w = world
    fast = {
        "BROKER_VISIBILITY_TIMEOUT": "3",
        "BROKER_RESTORE_INTERVAL": "1",
        "BROKER_RESTORE_THROTTLE": "1",
    }
    worker = w.start(**fast)
    w.send_orders()
    paused_child(w, worker)
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait(10)
    Path(str(w.pause) + ".held").unlink()
    assert w.broker.hlen("unacked") == 1
    w.start(**fast)
    assert_stored_exactly_once(w)
