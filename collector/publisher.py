"""The publisher thread: drains the outbox into Celery tasks sent by name over one reused
producer. Thin I/O: batching decisions are the outbox's (take what is queued, up to batch_max).

Broker down: the failed batch goes back into the outbox, the thread retries with a capped
backoff and a fresh connection; the socket readers never notice. Records dropped past the bound
come back from the outbox as publish_overflow gaps (handed to `on_gaps`).
"""
from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from typing import Callable

import orjson
from celery import Celery
from kombu.serialization import register

from . import contract
from .backoff import Backoff
from .outbox import Outbox

log = logging.getLogger("collector.publisher")

# Serialise with orjson but label it application/json: any Celery worker decodes it as JSON.
SERIALIZER = "okxjson"
register(SERIALIZER, lambda obj: orjson.dumps(obj).decode(), orjson.loads,
         content_type="application/json", content_encoding="utf-8")


def make_app(redis_url: str) -> Celery:
    app = Celery("collector-feeder", broker=redis_url, set_as_current=False)
    app.conf.update(
        task_serializer="json", accept_content=["json"], result_backend=None,
        broker_connection_retry=False, broker_connection_retry_on_startup=False,
        broker_connection_timeout=2,
        broker_transport_options={"socket_timeout": 3, "socket_connect_timeout": 2,
                                  "retry_on_timeout": False},
    )
    return app


class Publisher(threading.Thread):
    def __init__(self, outbox: Outbox, redis_url: str, producer_id: str, *,
                 on_gaps: Callable[[list], None] | None = None, latency=None) -> None:
        super().__init__(name="publisher", daemon=True)
        self.outbox = outbox
        self.redis_url = redis_url
        self.producer_id = producer_id
        self.on_gaps = on_gaps or (lambda gaps: None)
        self.latency = latency              # prometheus Histogram (optional)
        self.latencies: deque = deque(maxlen=200_000)  # per-record socket->publish seconds
        self.repairs: deque = deque()       # gap ids whose repair task is still to send
        self.stopping = threading.Event()
        self.app = make_app(redis_url)
        self._conn = None
        self._producer = None
        self.batches = 0
        self.published = 0
        self.failures = 0
        self.broker_ok = True
        self.last_error: str | None = None
        self._backoff = Backoff(initial=0.1, factor=2.0, cap=5.0)
        self._rng = random.Random()
        self._next_overflow_check = 0.0
        self.deadline: float | None = None   # set by flush(): stop retrying after this

    # ----- connection ----------------------------------------------------------------------------

    def _producer_now(self):
        if self._producer is None:
            self._conn = self.app.connection_for_write()
            self._producer = self.app.amqp.Producer(self._conn, serializer=SERIALIZER)
        return self._producer

    def _reset(self) -> None:
        conn, self._conn, self._producer = self._conn, None, None
        if conn is not None:
            try:
                conn.release()
            except Exception:  # noqa: BLE001 - a broken connection may fail to close
                pass

    def _send(self, name: str, args: list, queue: str, argsrepr: str | None = None) -> None:
        # argsrepr: a short label instead of Celery's repr of the whole batch (CPU, Flower).
        self.app.send_task(name, args=args, queue=queue, producer=self._producer_now(),
                           retry=False, serializer=SERIALIZER,
                           argsrepr=argsrepr or repr(args)[:200])

    # ----- loop ----------------------------------------------------------------------------------

    def run(self) -> None:
        outbox = self.outbox
        batch_max = outbox.batch_max
        kinds = contract.KINDS
        queues = outbox.queues
        while True:
            did = False
            taken = [(kind, outbox.take(kind, batch_max)) for kind in kinds if queues[kind]]
            taken = [t for t in taken if t[1]]
            if taken:
                if self._publish(taken):
                    did = True
                else:
                    for kind, items in taken:
                        outbox.put_back(kind, items)
                    self._failed()
                    did = None
            if did is not None and self.repairs:
                self._send_repairs()
            now = time.monotonic()
            if now >= self._next_overflow_check:
                self._next_overflow_check = now + 1.0
                gaps = outbox.drain_overflow()
                if gaps:
                    self.on_gaps(gaps)
            if self.stopping.is_set():
                if not outbox.backlog() and not self.repairs:
                    break
                if self.deadline is not None and now > self.deadline:
                    log.error("shutdown: %d records not published (broker unavailable)",
                              outbox.backlog())
                    break
            if did is False:
                outbox.wait(0.25)
        self._reset()

    def _publish(self, taken: list[tuple[str, list]]) -> bool:
        """One task per kind with records, all sent in one Redis round trip (kombu's producer
        batch: one pipeline, one client object, instead of one of each per task)."""
        now_ms = int(time.time() * 1000)
        try:
            producer = self._producer_now()
            with producer.batch():
                for kind, items in taken:
                    self.batches += 1
                    batch = contract.make_batch(kind, [it[5] for it in items], source="ws",
                                                producer=self.producer_id, batch=self.batches,
                                                sent_ms=now_ms)
                    self._send(contract.INGEST_TASKS[kind], [batch], contract.INGEST_QUEUE,
                               f"[<{kind} batch {self.batches}: {len(items)} records>]")
        except Exception as exc:  # noqa: BLE001 - kombu/redis raise many types when down
            self.last_error = f"{type(exc).__name__}: {exc}"
            return False
        done = time.monotonic()
        lat = self.latencies
        n = 0
        for _kind, items in taken:
            n += len(items)
            lat.extend([done - it[0] for it in items])
            if self.latency is not None:
                self.latency.observe(done - items[0][0])
        self.published += n
        if not self.broker_ok:
            log.warning("broker back: publishing again (backlog %d)", self.outbox.backlog())
        self.broker_ok = True
        self._backoff.reset()
        return True

    def _send_repairs(self) -> None:
        while self.repairs:
            gap_id = self.repairs[0]
            try:
                self._send(contract.REPAIR_GAP_TASK, [gap_id], contract.BACKFILL_QUEUE)
            except Exception as exc:  # noqa: BLE001
                self.last_error = f"{type(exc).__name__}: {exc}"
                self._failed()
                return
            self.repairs.popleft()

    def _failed(self) -> None:
        self.failures += 1
        if self.broker_ok:
            log.error("broker unavailable (%s): keeping records in the outbox (backlog %d)",
                      self.last_error, self.outbox.backlog())
        self.broker_ok = False
        self._reset()
        delay = self._backoff.next_delay(self._rng)
        if self.deadline is not None:
            delay = min(delay, max(0.0, self.deadline - time.monotonic()))
        self.stopping.wait(delay) if not self.stopping.is_set() else time.sleep(min(delay, 0.2))

    def request_repair(self, gap_id: str) -> None:
        self.repairs.append(gap_id)
        self.outbox.wake()

    def flush(self, timeout: float) -> None:
        """Stop after publishing everything queued, or give up at the deadline."""
        self.deadline = time.monotonic() + timeout
        self.stopping.set()
        self.outbox.wake()
        self.join(timeout + 1.0)
