"""kombu's Redis transport, with one client object reused for the worker's bookkeeping, and a
worker that survives losing the broker while it holds unacknowledged messages.

With late acknowledgement every task costs kombu two pipelines: the message goes into the
`unacked` hash when it is received and comes out when it is acked. kombu builds a new
`redis.Redis` object for each of them (`Channel.conn_or_acquire`), and with redis-py 8 building
one (its response-callback tables) costs more than the pipeline's round trip: 12% of a solo
worker's time on one-record tasks (bench/workers.py, py-spy). This channel keeps one client per
channel instead. The client holds no connection of its own (it borrows one from the channel's
pool per command), so sharing it is safe; it is dropped whenever kombu drops the pools (close,
after a fork), so it never outlives the pool it points to.

After a broker connection loss, Celery 5.7 collects the connection (which clears the transport's
`client`) and then closes it (`Consumer.on_connection_error_after_connected`). With messages
still unacknowledged, closing the channel restores them, which needs a Redis client, and kombu
builds one from the transport's `client`: an AttributeError that Celery does not expect, so the
worker exits with "Unrecoverable error" (seen in the fault matrix's Redis restart, and with
kombu's own transport as well: tests/test_broker_transport.py). Here that case raises a Redis
ConnectionError instead, which the close ignores like any broker error; the consumer reconnects,
and the messages, still in the `unacked` hash, come back after the visibility timeout.

Selected in celeryconfig.py with `broker_transport`; the URL (redis:// or rediss://) and every
transport option work as with kombu's own transport.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis
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

    def _connparams(self, asynchronous: bool = False) -> dict:
        if self.connection.client is None:  # the connection was collected (see above)
            raise redis.exceptions.ConnectionError(
                "broker connection already closed; unacknowledged messages stay in Redis"
            )
        return super()._connparams(asynchronous=asynchronous)

    def _disconnect_pools(self) -> None:
        self._shared_client = None
        super()._disconnect_pools()


class Transport(kombu_redis.Transport):
    Channel = Channel
