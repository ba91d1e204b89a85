"""The feeder's Redis state: its gaps, watermarks, heartbeat (keys in core/keys.py). A thread
that writes periodically and pipelined, never per message; when Redis is down everything stays
buffered (gaps in a bounded queue, watermarks as latest values) and is retried. How a gap is
stored is core/gaps.py's (the workers record theirs the same way).

Startup gap: before writing any watermark this run, the previous run's watermarks are read; the
first record of each (channel, instId) in this run is compared with them (pipeline.startup_gaps).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable

import orjson
import redis

from collector.pipeline import startup_gaps
from core import keys
from core.gaps import Gap, record_gap
from core.redis_clients import tls_kwargs
from core.settings import HEARTBEAT_EVERY_S
from okx.clock import now_ms as clock_ms

log = logging.getLogger("collector.ledger")

GAPS_BUFFER = 50_000


class Ledger(threading.Thread):
    def __init__(
        self,
        redis_url: str,
        feeder_id: str,
        keys: list[tuple],
        *,
        pull: Callable[[Ledger], None],
        on_gap_id: Callable[[str], None],
        status: Callable[[], dict],
        interval: float = 1.0,
        heartbeat_every: float = HEARTBEAT_EVERY_S,
    ) -> None:
        super().__init__(name="ledger", daemon=True)
        self.client = redis.Redis.from_url(
            redis_url, socket_timeout=2, socket_connect_timeout=2, **tls_kwargs(redis_url)
        )
        self.feeder_id = feeder_id
        self.keys = keys  # (channel, instId) planned this run
        self.pull = pull  # fills gaps/marks/first from the pipeline (locked)
        self.on_gap_id = on_gap_id
        self.status = status
        self.interval = interval
        self.heartbeat_every = heartbeat_every
        self.pending_gaps: deque[Gap] = deque(maxlen=GAPS_BUFFER)
        self.marks: dict[tuple, tuple] = {}
        self._written_marks: dict[tuple, tuple] = {}
        self.first: dict[tuple, tuple] = {}
        self.old_marks: dict[tuple, dict] | None = None
        self._checked: set = set()
        self.stopping = threading.Event()
        self.started_ms = clock_ms()
        self._next_heartbeat = 0.0
        self.redis_ok = True
        self.gaps_written = 0
        self.gap_ids: list[str] = []
        self.errors = 0

    def add_gaps(self, gaps: list[Gap]) -> None:
        if len(self.pending_gaps) + len(gaps) > GAPS_BUFFER:
            log.error("gap buffer full while Redis is down: oldest gap records lost")
        self.pending_gaps.extend(gaps)

    def run(self) -> None:
        # A first cycle at once: the heartbeat tells `collector status` the feeder is up.
        self.cycle()
        while not self.stopping.wait(self.interval):
            self.cycle()
        self.cycle(final=True)

    def cycle(self, final: bool = False) -> None:
        try:
            self.pull(self)
        except Exception:  # noqa: BLE001 - never let bookkeeping kill the thread
            log.exception("ledger: pulling state failed")
        try:
            self._flush(final)
            if not self.redis_ok:
                log.warning("redis back: ledger state written")
            self.redis_ok = True
        except Exception as exc:  # noqa: BLE001 - RedisError, OSError; never kill the thread
            self.errors += 1
            if self.redis_ok:
                log.error(
                    "redis unavailable for the ledger (%s): buffering %d gaps and the watermarks",
                    exc,
                    len(self.pending_gaps),
                )
            self.redis_ok = False

    def _flush(self, final: bool) -> None:
        r = self.client
        now_ms = clock_ms()
        if self.old_marks is None:
            pipe = r.pipeline(transaction=False)
            for key in self.keys:
                pipe.hgetall(keys.watermark_key(*key))
            res = pipe.execute()
            self.old_marks = {
                key: {k.decode(): v.decode() for k, v in h.items()}
                for key, h in zip(self.keys, res)
                if h
            }
        new_first = {k: v for k, v in self.first.items() if k not in self._checked}
        if new_first:
            self.add_gaps(startup_gaps(self.old_marks, new_first))
            self._checked.update(new_first)
        while self.pending_gaps:
            # The only writer of this feeder's gaps: no MULTI needed (the id is from INCR).
            gap = record_gap(r, self.pending_gaps[0], self.feeder_id, now_ms, atomic=False)
            self.pending_gaps.popleft()
            self.gaps_written += 1
            self.gap_ids.append(gap.id)
            log.warning(
                "gap %s: %s %s %s %s..%s ids %s..%s (%s)",
                gap.id,
                gap.cause,
                gap.channel,
                gap.instId,
                gap.start_ms,
                gap.end_ms,
                gap.start_id,
                gap.end_id,
                gap.reason,
            )
            self.on_gap_id(gap.id)
        changed = {k: v for k, v in self.marks.items() if self._written_marks.get(k) != v}
        if changed:
            pipe = r.pipeline(transaction=False)
            for (channel, inst), (ts, rid, seen) in changed.items():
                pipe.hset(
                    keys.watermark_key(channel, inst),
                    mapping={"ts": str(ts), "id": str(rid), "seen_ms": str(seen)},
                )
            pipe.execute()
            self._written_marks.update(changed)
        now = time.monotonic()
        if final or now >= self._next_heartbeat:
            self._next_heartbeat = now + self.heartbeat_every
            hb_key = keys.feeder_key(self.feeder_id)
            pipe = r.pipeline(transaction=False)
            if final:
                pipe.delete(hb_key)
                pipe.srem(keys.FEEDERS, self.feeder_id)
            else:
                pipe.hset(
                    hb_key,
                    mapping={
                        "heartbeat_ms": str(now_ms),
                        "pid": str(os.getpid()),
                        "started_ms": str(self.started_ms),
                        "connections": orjson.dumps(self.status()).decode(),
                    },
                )
                pipe.expire(hb_key, keys.HEARTBEAT_TTL_S)
                pipe.sadd(keys.FEEDERS, self.feeder_id)
            pipe.execute()

    def stop(self, timeout: float = 3.0) -> None:
        self.stopping.set()
        self.join(timeout)
