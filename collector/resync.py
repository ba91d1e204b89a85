"""The REST book resync: order-book snapshots fetched off the reader threads.

The pipeline decides which books need a REST snapshot (a seqId break, a bad checksum, no
snapshot on the socket) and when (`due_resyncs`, paced per book); this thread only fetches the
snapshots and offers them back (`offer_snapshot`, which judges them). Books the pipeline gives
up on come back as `resubscribe` keys, handed to the connection that carries them.
Thread name: rest.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from collector.pipeline import Pipeline
from okx.clock import now_ms
from okx.rest.client import RestClient, RestError
from okx.rest.endpoints import book as rest_book

log = logging.getLogger("collector.resync")

POLL_S = 0.05  # how often due resyncs are looked for: well inside the 2 s resync bound


class BookResync(threading.Thread):
    def __init__(
        self,
        pipeline: Pipeline,
        lock: threading.Lock,
        rest: RestClient,
        stopping: threading.Event,
        resubscribe: Callable[[tuple], None],
    ) -> None:
        super().__init__(name="rest", daemon=True)
        self.pipeline = pipeline
        self.lock = lock  # the feeder's lock: the pipeline is not thread-safe
        self.rest = rest
        self.stopping = stopping
        self.resubscribe = resubscribe  # (channel, instId) -> its connection resubscribes

    def run(self) -> None:
        p = self.pipeline
        while not self.stopping.wait(POLL_S):
            with self.lock:
                jobs = p.due_resyncs(now_ms())
                fallback = list(p.resubscribe)
                p.resubscribe.clear()
            for key, epoch, sz in jobs:
                try:
                    snap = rest_book(self.rest, key[1], sz)
                except RestError as exc:
                    log.warning("resync %s %s: REST books failed: %s", key[0], key[1], exc)
                    snap = None
                with self.lock:
                    outcome = p.offer_snapshot(key, snap, epoch, now_ms(), time.monotonic())
                log.log(
                    logging.INFO if outcome == "done" else logging.WARNING,
                    "resync %s %s from REST: %s",
                    key[0],
                    key[1],
                    outcome,
                )
            for key in fallback:
                self.resubscribe(key)
