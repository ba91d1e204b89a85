"""tasks.broker_transport: the worker's Redis transport, against a real redis-server."""

from __future__ import annotations

import pytest
import redis
from kombu import Connection
from kombu.common import ignore_errors

from tasks.broker_transport import Transport

pytestmark = pytest.mark.integration


def test_closing_a_collected_connection_with_unacked_messages_is_a_connection_error(redis_url):
    # What Celery 5.7 does after losing the broker: Connection.collect() (which ends by clearing
    # the transport's client), then close(), whose channel close restores unacked messages.
    # kombu's own transport raises AttributeError there and the worker dies; this one raises a
    # connection error, which close() is called under ignore_errors for.
    conn = Connection(redis_url, transport=Transport)
    channel = conn.default_channel
    channel.client.ping()
    channel.qos._delivered["delivery-tag-1"] = None  # a message delivered, not acked yet
    conn._do_close_transport()
    with pytest.raises(redis.exceptions.ConnectionError, match="already closed"):
        channel.qos.restore_unacked()
    ignore_errors(conn, conn.close)  # must not raise


def test_bookkeeping_client_is_reused_and_dropped_with_the_pools(redis_url):
    conn = Connection(redis_url, transport=Transport)
    channel = conn.default_channel
    with channel.conn_or_acquire() as first, channel.conn_or_acquire() as second:
        assert first is second and first.ping()
    channel._disconnect_pools()
    with channel.conn_or_acquire() as third:
        assert third is not first and third.ping()
    conn.close()
