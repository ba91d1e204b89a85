"""kombu's Redis transport, with one client object reused for the worker's bookkeeping.

With late acknowledgement every task costs kombu two pipelines: the message goes into the
`unacked` hash when it is received and comes out when it is acked. kombu builds a new
`redis.Redis` object for each of them (`Channel.conn_or_acquire`), and with redis-py 8 building
one (its response-callback tables) costs more than the pipeline's round trip: 12% of a solo
worker's time on one-record tasks (bench/workers.py, py-spy). This channel keeps one client per
channel instead. The client holds no connection of its own (it borrows one from the channel's
pool per command), so sharing it is safe; it is dropped whenever kombu drops the pools (close,
after a fork), so it never outlives the pool it points to.

Selected in celeryconfig.py with `broker_transport`; the URL (redis:// or rediss://) and every
transport option work as with kombu's own transport.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    _shared_client: Any = None

    @contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        if client:
            yield client
            return
        shared = self._shared_client
        if shared is None:
            shared = self._shared_client = self._create_client()
        yield shared

    def _disconnect_pools(self) -> None:
        self._shared_client = None
        super()._disconnect_pools()


class Transport(kombu_redis.Transport):
    Channel = Channel
