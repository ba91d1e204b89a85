"""State stays fresh while MongoDB is down, hung or slow, and every trade reaches MongoDB once.

Real parts end to end: a prefork `celery -A tasks worker -c 2 -Q ingest,history,backfill` (the
Procfile's queues), the real redis-server (`redis_url`: broker, and state on db 1), and pymongo
with a `mongodb://` URI against the wire-protocol server (`mongo_server`) behind the fault proxy
(localrun/mongo_faults.py): `down` is nothing listening (server selection), `hung` accepts and
never answers (socket timeouts), `slow` delays every reply 200 ms. Batches are sent by name as
the feeder sends them, about 20 a second; the test samples the ticker hash's age meanwhile.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import redis
from celery import Celery
from pymongo import MongoClient

from core import keys
from core.contract import INGEST_QUEUE, INGEST_TASKS
from localrun.mongo_faults import MongoFaultProxy
from localrun.redis_server import free_port
from tests.conftest import with_database
from tests.workers_fixtures import batch, kill_quietly, ticker, trade, wait_for

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parent.parent
CELERY = str(Path(sys.executable).with_name("celery"))
FAULT_S = 8.0


def _start_worker(env: dict[str, str], log: Path) -> subprocess.Popen:
    cmd = [CELERY, "-A", "tasks", "worker", "-P", "prefork", "-c", "2",
           "-Q", "ingest,history,backfill", "--without-gossip", "--without-mingle",
           "--without-heartbeat", "-l", "INFO", "-n", "history@%h"]  # fmt: skip
    with open(log, "w") as out:
        return subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


class Feed:
    """Sends a tickers batch and a trades batch every 50 ms; samples the ticker state's age."""

    def __init__(self, redis_url: str, state: redis.Redis):
        self.sender = Celery("feeder", broker=redis_url)
        self.state = state
        self.sent_ids: list[int] = []
        self.ages: list[tuple[float, float]] = []  # (monotonic, age s)
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._send), threading.Thread(target=self._watch)]

    def start(self) -> Feed:
        for t in self.threads:
            t.start()
        return self

    def _send(self) -> None:
        tid = 1000
        while not self.stop.is_set():
            now = int(time.time() * 1000)
            ids = list(range(tid, tid + 5))
            tid += 5
            self.sender.send_task(INGEST_TASKS["tickers"], args=[batch("tickers", [ticker(ts=now)])],
                                  queue=INGEST_QUEUE)  # fmt: skip
            self.sender.send_task(
                INGEST_TASKS["trades"], args=[batch("trades", [trade(i, ts=now) for i in ids])],
                queue=INGEST_QUEUE,
            )  # fmt: skip
            self.sent_ids += ids
            self.stop.wait(0.05)

    def _watch(self) -> None:
        while not self.stop.is_set():
            ts = self.state.hget(keys.ticker("BTC-USDT"), "ts")
            if ts is not None:
                self.ages.append((time.monotonic(), time.time() - int(ts) / 1000))
            self.stop.wait(0.05)

    def end(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(10)
        self.sender.close()


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


@pytest.mark.parametrize("mode", ["down", "hung", "slow"])
def test_state_keeps_fresh_through_a_mongodb_fault_and_history_arrives_once(
    mode, redis_url, mongo_server, tmp_path
):
    proxy = MongoFaultProxy(mongo_server.port).start()
    name = f"okex_hist_{mode}"
    uri = with_database(proxy.uri, name)
    state_url = redis_url.replace("/0", "/1")
    state = redis.Redis.from_url(state_url)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "REDIS_URL": redis_url,
        "STATE_REDIS_URL": state_url,
        "MONGODB_URI": uri,
        "MONGODB_DB": name,
        "BOOKS_RETENTION_S": "0",
        "HISTORY_BREAKER_OPEN_S": "1",
        "HISTORY_WRITE_TIMEOUT_S": "0.5",
        "WORKER_METRICS_PORT": str(metrics_port := free_port()),
    }
    env.pop("MONGO_CLIENT_FACTORY", None)
    worker = _start_worker(env, tmp_path / "worker.log")
    feed = None
    direct = MongoClient(mongo_server.uri, serverSelectionTimeoutMS=5000)
    try:
        feed = Feed(redis_url, state).start()
        wait_for(lambda: feed.ages and feed.ages[-1][1] < 0.3, timeout=60, what="fresh state first")
        proxy.set_mode(mode)
        fault_start = time.monotonic()
        time.sleep(FAULT_S)  # the outage lasts this long; the feed and the watcher run on
        fault_end = time.monotonic()
        broker = redis.Redis.from_url(redis_url)  # breaker and parked history live there
        parked = int(broker.get(keys.HISTORY_PENDING_BYTES) or 0)
        breaker = broker.hget(keys.history_breaker(keys.MONGO_BREAKER), "state")
        scraped = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5)
        metrics = scraped.read().decode()
        proxy.set_mode("pass")
        time.sleep(2.0)
        feed.end()
        during = [age for t, age in feed.ages if fault_start <= t <= fault_end]
        log = (tmp_path / "worker.log").read_text
        assert during and p99(during) < 1.0, (p99(during), max(during), log()[-3000:])
        assert parked > 0 and breaker in (b"open", b"half_open"), (parked, breaker)
        # the worker's /metrics says so too (read from Redis at scrape time)
        assert any(
            f'okx_history_breaker_state{{state="{st}"}} 1.0' in metrics
            for st in ("open", "half_open")
        ), metrics
        assert "okx_history_pending_bytes" in metrics
        coll = direct[name]["trades"]
        wait_for(lambda: coll.count_documents({}) >= len(feed.sent_ids), timeout=60,
                 what="every trade in MongoDB")  # fmt: skip
        stored = sorted(int(d["tradeId"]) for d in coll.find({}, {"tradeId": 1}))
        assert stored == sorted(feed.sent_ids)  # each once: none lost, none twice
        assert b"history breaker OPEN" in (tmp_path / "worker.log").read_bytes()
    finally:
        if feed is not None:
            feed.end()
        kill_quietly(-worker.pid, signal.SIGTERM)
        try:
            worker.wait(20)
        except subprocess.TimeoutExpired:
            kill_quietly(-worker.pid, signal.SIGKILL)
            worker.wait(10)
        proxy.stop()
        direct.drop_database(name)
        direct.close()
