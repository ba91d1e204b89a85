"""The publisher thread: drains the outbox into Celery tasks, LPUSHed straight onto the broker's
Redis lists (collector/celery_message.py builds them; a Celery worker cannot tell them from
`send_task`'s). Thin I/O: one LPUSH per cycle, on one reused client.

Batching adapts to the workers, with no flush timer: each cycle takes what the readers queued
meanwhile (up to batch_max per kind), so batches are small when quiet and large when busy. The
LPUSH reply is the queue's length: when tasks were already waiting there, the workers are behind,
and the next cycle lingers (about 1 ms per waiting task, at most linger_max) so records gather
into fewer, larger tasks. That costs nothing in latency (they would have waited in the queue
anyway) and the workers spend their time on records instead of per-task overhead.

Broker down: the failed batch goes back into the outbox, the thread retries with a capped
backoff on a fresh connection; the socket readers never notice. A line is logged at the first
failure and then every RETRY_LOG_EVERY_S while it lasts (with the backlog). Records dropped past
the bound come back from the outbox as publish_overflow gaps (handed to `on_gaps`).

Watermarks follow what was PUBLISHED: `marks` holds, per (channel, instId), the last record an
LPUSH accepted, and that is what the ledger writes to Redis. Records still in the outbox when
the feeder stops (broker down or hung) are then inside the next start's startup gap, never
behind a watermark that claims them (docs/supervision.md).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import redis

from collector import claims
from collector.celery_message import task_message
from collector.claims import TaskSpec
from collector.outbox import Outbox
from collector.supervisor import Supervisor
from core import contract
from core.redis_clients import tls_kwargs
from okx.backoff import Backoff
from okx.clock import now_ms as clock_ms

log = logging.getLogger("collector.publisher")

LINGER_PER_WAITING_TASK_S = 0.001  # about one small task's cost in a worker (bench/workers.py)
CLAIMS_OFF_S = 60.0  # after the claim script failed: plain pushes this long, then try again
RETRY_LOG_EVERY_S = 5.0  # while the broker is down: a line at least this often


def broker_client(redis_url: str) -> redis.Redis:
    # No retries inside the client: a failed cycle goes back to the outbox and the thread's own
    # backoff decides when to try again (the readers never wait on this).
    return redis.Redis.from_url(
        redis_url,
        socket_timeout=3,
        socket_connect_timeout=2,
        retry_on_timeout=False,
        **tls_kwargs(redis_url),
    )


class Publisher(threading.Thread):
    def __init__(
        self,
        outbox: Outbox,
        redis_url: str,
        producer_id: str,
        *,
        shard: str = "default",
        on_gaps: Callable[[list], None] | None = None,
        latency=None,
        linger_max_s: float = 0.02,
        supervisor: Supervisor | None = None,
        claim_ttl_s: float = 0.0,
        standby_delay_s: float = 0.0,
        shard_view: Callable[[], dict[str, bool]] = dict,
    ) -> None:
        super().__init__(name="publisher", daemon=True)
        self.outbox = outbox
        self.redis_url = redis_url
        self.producer_id = producer_id
        self.shard = shard
        self.on_gaps = on_gaps or (lambda gaps: None)
        self.latency = latency  # prometheus Histogram (optional)
        self.latencies: deque = deque(maxlen=200_000)  # per-record socket->publish seconds
        self.repairs: deque = deque()  # gap ids whose repair task is still to send
        self.stopping = threading.Event()
        self.linger_max_s = linger_max_s
        # Publish claims (collector/claims.py): on while shard_view() (feeder id -> live, as of
        # the ledger's last heartbeat) shows another live feeder; claim_ttl_s 0 = never. The
        # feeders other than the leader (the smallest live id) publish standby_delay_s late.
        self.claim_ttl_ms = int(claim_ttl_s * 1000)
        self.standby_delay_s = standby_delay_s
        self.shard_view = shard_view
        self.claiming = False
        self.standby = False
        self.claimed_by_peer = 0  # records left out: the other feeder had pushed them
        self.claim_failures = 0
        self._claims_off_until = 0.0
        self._script: Any = None
        self._script_client: redis.Redis | None = None
        self._client: redis.Redis | None = None
        self.batches = 0
        self.published = 0
        self.failures = 0
        self.queue_depth = 0  # ingest tasks waiting, as of the last publish
        self.lingers = 0
        self.broker_ok = True
        self.last_error: str | None = None
        self._linger_until = 0.0
        self._backoff = Backoff(initial=0.1, factor=2.0, cap=5.0)
        self._rng = random.Random()
        self._next_overflow_check = 0.0
        self._dropped_seen = 0
        self.deadline: float | None = None  # set by flush(): stop retrying after this
        self.supervisor = supervisor or Supervisor(self.stopping)
        self._checkpoint = self.supervisor.handle(self.name)
        # (channel, instId) -> (ts, id, published_ms) of the last record the broker accepted
        self.marks: dict[tuple[str, str], tuple[int, str, int]] = {}
        self.down_since: float | None = None
        self._next_retry_log = 0.0

    # ----- connection ----------------------------------------------------------------------------

    def _broker(self) -> redis.Redis:
        if self._client is None:
            self._client = broker_client(self.redis_url)
        return self._client

    def _reset(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception:  # noqa: BLE001 - a broken connection may fail to close
                pass

    # ----- loop ----------------------------------------------------------------------------------

    def run(self) -> None:
        # A crash in a cycle: its batch may be lost in flight (never behind a watermark: marks
        # move only after a successful LPUSH), the loop restarts after the backoff.
        self.supervisor.run(self.name, self._loop, stopping=self.stopping)
        if self.outbox.backlog():
            log.error(
                "shutdown: %d records not published (broker unavailable): the next start's "
                "startup gap covers them (watermarks stop at the last published record)",
                self.outbox.backlog(),
            )
        self._reset()

    def _loop(self) -> None:
        outbox = self.outbox
        batch_max = outbox.batch_max
        kinds = contract.KINDS
        queues = outbox.queues
        checkpoint = self._checkpoint
        while True:
            checkpoint()  # a test's injected fault (an attribute read otherwise)
            if self._linger_until:
                # The workers were behind at the last publish: let records gather a little.
                wait = self._linger_until - time.monotonic()
                self._linger_until = 0.0
                if wait > 0 and outbox.backlog() < batch_max and not self.stopping.is_set():
                    self.stopping.wait(wait)
            did: bool | None = False  # None: a publish failed this cycle
            self._role()
            due = None
            if self.standby and not self.stopping.is_set():
                due = time.monotonic() - self.standby_delay_s
            taken = [(kind, outbox.take(kind, batch_max, due)) for kind in kinds if queues[kind]]
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
                    break
            if did is False:
                if due is not None and outbox.backlog():
                    # a standby: nothing due yet; sleep until its oldest record is
                    oldest = outbox.oldest()
                    wait = 0.0 if oldest is None else oldest + self.standby_delay_s - now
                    self.stopping.wait(min(max(wait, 0.001), 0.25))
                else:
                    outbox.wait(0.25)

    def _publish(self, taken: list[tuple[str, list]]) -> bool:
        """The cycle's records in one round trip: one task per kind, or, when the cycle is small
        and holds several kinds, one mixed task (a worker's cost per task is ~1 ms, per record
        ~30 us: a quiet market should not pay it once per kind). While another feeder of the
        shard is live, through the claim script (collector/claims.py): records that feeder
        already pushed are left out, and a task left with none is not sent."""
        now_ms = clock_ms()
        batches = []
        for kind, items in taken:
            self.batches += 1
            batches.append(
                contract.make_batch(
                    kind,
                    [it[5] for it in items],
                    source="ws",
                    producer=self.producer_id,
                    shard=self.shard,
                    batch=self.batches,
                    sent_ms=now_ms,
                )
            )
        specs = self._specs(taken, batches)
        try:
            if self.claiming:
                try:
                    depth, pushed, skipped = self._push_claimed(specs)
                except redis.exceptions.ResponseError as exc:
                    # the script refused (never a connection error): publish plainly rather
                    # than stall; the workers drop the copies meanwhile
                    self._claims_failed(exc)
                    depth, pushed, skipped = self._push(specs), len(specs), 0
            else:
                depth, pushed, skipped = self._push(specs), len(specs), 0
        except Exception as exc:  # noqa: BLE001 - redis raises many types when down
            self.last_error = f"{type(exc).__name__}: {exc}"
            return False
        done = time.monotonic()
        self.claimed_by_peer += skipped
        waiting = int(depth) - pushed  # tasks that were already queued before ours
        self.queue_depth = int(depth)
        if waiting > 0:
            self.lingers += 1
            self._linger_until = done + min(self.linger_max_s, waiting * LINGER_PER_WAITING_TASK_S)
        lat = self.latencies
        n = 0
        for _kind, items in taken:
            n += len(items)
            lat.extend([done - it[0] for it in items])
            if self.latency is not None:
                self.latency.observe(done - items[0][0])
        self.published += n
        if self.outbox.dropped != self._dropped_seen:
            # Records were dropped past the bound: their gaps reach the ledger before any mark
            # past them does (coverage must never span a dropped window: collector/coverage.py)
            self._dropped_seen = self.outbox.dropped
            gaps = self.outbox.drain_overflow()
            if gaps:
                self.on_gaps(gaps)
        self._advance_marks(taken)
        if not self.broker_ok:
            down = done - self.down_since if self.down_since is not None else 0.0
            log.warning(
                "broker back after %.0f s: publishing again (backlog %d)",
                down,
                self.outbox.backlog(),
            )
        self.broker_ok = True
        self.down_since = None
        self._backoff.reset()
        return True

    def _role(self) -> None:
        """Claim while another feeder of the shard is live; be its standby unless this feeder
        has the smallest live id. Standby: publish each record standby_delay_s after it
        arrived, so that the leader's claims almost always come first and this feeder's
        copies are left out instead of becoming tasks of their own (a record both push in
        the same moment is still pushed once: the claims decide, the delay only makes it
        cheap). The leader gone, the standby is leader at the next heartbeat that shows it."""
        if not self.claim_ttl_ms or time.monotonic() < self._claims_off_until:
            self.claiming = self.standby = False
            return
        live = sorted(f for f, up in self.shard_view().items() if up)
        me = self.producer_id
        self.claiming = any(f != me for f in live)
        self.standby = self.claiming and self.standby_delay_s > 0 and live[0] < me

    def _claims_failed(self, exc: Exception) -> None:
        self.claim_failures += 1
        self._claims_off_until = time.monotonic() + CLAIMS_OFF_S
        self.claiming = self.standby = False
        log.error(
            "the claim script failed (%s: %s): publishing without claims for %.0f s (the "
            "other feeder's copies reach the workers, which drop them)",
            type(exc).__name__,
            exc,
            CLAIMS_OFF_S,
        )

    @property
    def role(self) -> str:
        """alone (no live peer: plain pushes), leader or standby (claims)."""
        return "standby" if self.standby else "leader" if self.claiming else "alone"

    def _specs(self, taken: list[tuple[str, list]], batches: list[dict]) -> list[TaskSpec]:
        total = sum(len(items) for _kind, items in taken)
        if len(batches) > 1 and total <= self.outbox.batch_max:
            label = ", ".join(f"{kind} {len(items)}" for kind, items in taken)
            first = batches[0]["batch"]
            return [
                TaskSpec(
                    contract.INGEST_MIXED_TASK,
                    f"[<batches {first}-{self.batches}: {label}>]",
                    batches,
                    mixed=True,
                )
            ]
        # argsrepr: a short label instead of a repr of the whole batch (shown by Flower).
        return [
            TaskSpec(
                contract.INGEST_TASKS[kind],
                f"[<{kind} batch {b['batch']}: {len(items)} records>]",
                [b],
            )
            for (kind, items), b in zip(taken, batches)
        ]

    def _push(self, specs: list[TaskSpec]) -> int:
        messages = [
            task_message(
                s.name,
                [s.envelopes] if s.mixed else s.envelopes,
                contract.INGEST_QUEUE,
                argsrepr=s.argsrepr,
            )
            for s in specs
        ]
        return int(self._broker().lpush(contract.INGEST_QUEUE, *messages))

    def _push_claimed(self, specs: list[TaskSpec]) -> tuple[int, int, int]:
        """(queue length, tasks pushed, records left out) of the claim script."""
        call = claims.build(specs, self.shard, self.claim_ttl_ms)
        client = self._broker()
        if self._script is None or self._script_client is not client:
            self._script, self._script_client = client.register_script(claims.SCRIPT), client
        depth, pushed, skipped = self._script(keys=call.keys, args=call.argv)
        return int(depth), int(pushed), int(skipped)

    def _advance_marks(self, taken: list[tuple[str, list]]) -> None:
        """The watermarks of what the broker just accepted: the last record per (channel,
        instId) of each kind's batch (a queue is in order; across kinds the later ts wins)."""
        marks = self.marks
        stamp = clock_ms()
        for _kind, items in taken:
            last = {(it[1], it[2]): it for it in items}
            for key, it in last.items():
                old = marks.get(key)
                if old is None or it[3] >= old[0]:
                    marks[key] = (it[3], it[4], stamp)

    def _send_repairs(self) -> None:
        gap_ids = list(self.repairs)
        messages = [
            task_message(contract.REPAIR_GAP_TASK, [g], contract.BACKFILL_QUEUE, argsrepr=repr([g]))
            for g in gap_ids
        ]
        try:
            self._broker().lpush(contract.BACKFILL_QUEUE, *messages)
        except Exception as exc:  # noqa: BLE001
            self.last_error = f"{type(exc).__name__}: {exc}"
            self._failed()
            return
        for _ in gap_ids:
            self.repairs.popleft()

    def _failed(self) -> None:
        self.failures += 1
        now = time.monotonic()
        if self.broker_ok:
            self.down_since = now
            self._next_retry_log = now + RETRY_LOG_EVERY_S
            log.error(
                "broker unavailable (%s): keeping records in the outbox (backlog %d)",
                self.last_error,
                self.outbox.backlog(),
            )
        elif now >= self._next_retry_log:
            self._next_retry_log = now + RETRY_LOG_EVERY_S
            log.warning(
                "broker still unavailable after %.0f s (%s): retrying; backlog %d records",
                now - (self.down_since or now),
                self.last_error,
                self.outbox.backlog(),
            )
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
