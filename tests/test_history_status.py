"""The history path as operators see it: `collector status` and the workers' /metrics."""

from __future__ import annotations

import socket
import urllib.request

import fakeredis
import pytest
from prometheus_client import CollectorRegistry

from collector import status
from core import keys
from core.settings import WorkerSettings as Settings
from tasks.history.breaker import Breaker
from tasks.history.metrics import HistoryCollector, serve
from tasks.history.pending import Pending
from tests.workers_fixtures import trade

NOW_MS = 1_800_000_000_000


@pytest.fixture
def server(monkeypatch):
    srv = fakeredis.FakeServer()
    monkeypatch.setattr(
        status, "redis_client", lambda url: fakeredis.FakeRedis(server=srv, decode_responses=True)
    )
    return srv


def _open_breaker(client) -> None:
    b = Breaker(client, Settings(), clock_ms=lambda: NOW_MS - 12_000)
    b.failure("ServerSelectionTimeoutError: No servers found")
    Pending(client, 10**6).park([("trades", [trade(i) for i in range(1, 50)])])


def test_status_shows_a_closed_breaker_and_an_empty_backlog(server):
    st = status.gather("redis://unused", now_ms=NOW_MS)
    assert st["history"]["breaker"] == "closed" and st["history"]["pending_bytes"] == 0
    assert not any("breaker" in p for p in st["problems"])
    assert "history: MongoDB breaker closed; parked 0 B in 0 batches" in status.format_status(st)


def test_status_says_degraded_while_the_breaker_is_open_with_the_backlog(server):
    client = fakeredis.FakeRedis(server=server)
    _open_breaker(client)
    st = status.gather("redis://unused", now_ms=NOW_MS)
    h = st["history"]
    assert h["breaker"] == "open" and h["since_s"] == 12.0 and h["pending_batches"] == 1
    assert h["pending_bytes"] == int(client.get(keys.HISTORY_PENDING_BYTES)) > 0
    text = status.format_status(st)
    assert text.splitlines()[0] == "DEGRADED"
    assert "MongoDB breaker open for 12 s (ServerSelectionTimeoutError" in text
    assert f"parked {h['pending_bytes']} B in 1 batches" in text


def test_metrics_read_the_breaker_and_the_bytes_from_redis():
    client = fakeredis.FakeRedis()
    _open_breaker(client)
    reg = CollectorRegistry()
    reg.register(HistoryCollector(lambda: client, 8_000_000, 2_000_000))
    assert reg.get_sample_value("okx_history_breaker_state", {"state": "open"}) == 1.0
    assert reg.get_sample_value("okx_history_breaker_state", {"state": "closed"}) == 0.0
    pending = int(client.get(keys.HISTORY_PENDING_BYTES))
    assert reg.get_sample_value("okx_history_pending_bytes") == pending > 0
    assert reg.get_sample_value("okx_history_pending_max_bytes") == 8_000_000
    assert reg.get_sample_value("okx_history_redis_up") == 1.0


def test_metrics_answer_when_redis_is_down():
    class Down:
        def hgetall(self, key):
            raise ConnectionError("refused")

    reg = CollectorRegistry()
    reg.register(HistoryCollector(lambda: Down(), 1, 1))
    assert reg.get_sample_value("okx_history_redis_up") == 0.0


@pytest.mark.integration
def test_the_worker_serves_them_on_its_metrics_port():
    client = fakeredis.FakeRedis()
    _open_breaker(client)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    serve(port, lambda: client, registry=CollectorRegistry())
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert 'okx_history_breaker_state{state="open"} 1.0' in body
    assert "okx_history_pending_bytes" in body
