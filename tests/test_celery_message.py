"""The feeder's own Celery task messages: the same envelope Celery's send_task puts on a Redis
broker (a real worker consuming them is covered by test_worker_integration.py, which sends every
batch this way), and the publisher's use of LPUSH's reply to batch more when workers lag."""

from __future__ import annotations

import base64
import time

import orjson
import pytest
import redis
from celery import Celery

from collector.celery_message import task_message
from collector.outbox import Outbox
from collector.publisher import Publisher
from core import contract

pytestmark = pytest.mark.integration


def _celery_message(redis_url: str, name: str, args: list, queue: str, argsrepr: str) -> dict:
    app = Celery("reference", broker=redis_url, set_as_current=False)
    app.conf.task_ignore_result = True
    client = redis.Redis.from_url(redis_url)
    try:
        app.send_task(name, args=args, queue=queue, argsrepr=argsrepr)
        return orjson.loads(client.rpop(queue))
    finally:
        app.close()
        client.close()


def test_message_has_the_shape_celery_gives_it(redis_url):
    batch = {"v": 1, "kind": "trades", "records": [{"instId": "BTC-USDT", "px": "1.5"}]}
    ref = _celery_message(redis_url, "tasks.ingest.trades", [batch], "ingest", "<label>")
    ours = orjson.loads(task_message("tasks.ingest.trades", [batch], "ingest", argsrepr="<label>"))

    assert set(ours) == set(ref)
    assert set(ours["headers"]) == set(ref["headers"])
    # Celery adds its own argsrepr copy to the properties; workers read the header.
    assert set(ours["properties"]) == set(ref["properties"]) - {"argsrepr"}
    for field in ("content-type", "content-encoding"):
        assert ours[field] == ref[field]
    for field in (
        "lang",
        "task",
        "retries",
        "timelimit",
        "argsrepr",
        "kwargsrepr",
        "eta",
        "expires",
        "group",
        "parent_id",
        "replaced_task_nesting",
    ):
        assert ours["headers"][field] == ref["headers"][field], field
    for field in ("delivery_info", "priority", "body_encoding", "delivery_mode"):
        assert ours["properties"][field] == ref["properties"][field], field
    tid = ours["headers"]["id"]
    assert ours["headers"]["root_id"] == ours["properties"]["correlation_id"] == tid
    assert orjson.loads(base64.b64decode(ours["body"])) == orjson.loads(
        base64.b64decode(ref["body"])
    )


def test_every_message_gets_its_own_ids():
    a = orjson.loads(task_message("t", [1], "q", argsrepr=""))
    b = orjson.loads(task_message("t", [1], "q", argsrepr=""))
    assert a["headers"]["id"] != b["headers"]["id"]
    assert a["properties"]["delivery_tag"] != b["properties"]["delivery_tag"]


def _taken(outbox: Outbox, n: int) -> list:
    for i in range(n):
        outbox.put("trades", "trades-all", "BTC-USDT", 1000 + i, str(i), {"i": i}, time.monotonic())
    return [("trades", outbox.take("trades", 500))]


def test_publisher_lingers_only_while_tasks_wait_in_the_queue(redis_url):
    client = redis.Redis.from_url(redis_url)
    pub = Publisher(Outbox(), redis_url, "t", linger_max_s=0.02)

    assert pub._publish(_taken(pub.outbox, 3))
    assert (pub.queue_depth, pub.lingers, pub._linger_until) == (1, 0, 0.0)  # workers keep up

    client.lpush(contract.INGEST_QUEUE, *[b"waiting"] * 5)  # 6 tasks now wait before ours
    before = time.monotonic()
    assert pub._publish(_taken(pub.outbox, 2))
    assert (pub.queue_depth, pub.lingers) == (7, 1)
    assert before + 0.006 <= pub._linger_until <= time.monotonic() + 0.006  # ~1 ms per task

    client.lpush(contract.INGEST_QUEUE, *[b"waiting"] * 100)
    assert pub._publish(_taken(pub.outbox, 1))
    assert pub._linger_until <= time.monotonic() + 0.02  # capped
    assert [m for m in client.lrange(contract.INGEST_QUEUE, 0, -1) if m != b"waiting"]
    client.close()
