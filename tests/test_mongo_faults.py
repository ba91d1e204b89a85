"""localrun/mongo_faults.py with the real pymongo client: each fault produces what pymongo really
raises, within the client's timeouts, and pass mode afterwards works again with the same client.

What pymongo 4.x does, measured here (serverSelectionTimeoutMS 1000, connectTimeoutMS and
socketTimeoutMS 500): nothing listening -> ServerSelectionTimeoutError ("Connection refused")
after the full selection time; hung -> ServerSelectionTimeoutError ("timed out") for a new
client, and AutoReconnect (NetworkTimeout, or the operation cancelled when the monitor gives the
server up) on a pooled connection; slow -> every operation at least the delay slower, and
NetworkTimeout when the delay exceeds socketTimeoutMS; refuse -> ServerSelectionTimeoutError
("reset") after the selection time, AutoReconnect on a pooled connection.
"""

from __future__ import annotations

import socket
import time

import pytest
from pymongo import MongoClient
from pymongo.errors import AutoReconnect, NetworkTimeout, ServerSelectionTimeoutError

from localrun.mongo_faults import MongoFaultProxy
from tests.polling import wait_for

pytestmark = pytest.mark.integration

SELECTION_S, CONNECT_S, SOCKET_S = 1.0, 0.5, 0.5
# The longest pymongo may take to give up: a socket timeout on the pooled connection, then a
# retry (retryable reads/writes) that waits the full server selection.
GIVE_UP_S = SOCKET_S + SELECTION_S + 1.5


@pytest.fixture
def proxy(mongo_server):
    with MongoFaultProxy(mongo_server.port) as p:
        yield p


def client_for(uri: str, **overrides: int) -> MongoClient:
    options = {
        "serverSelectionTimeoutMS": int(SELECTION_S * 1000),
        "connectTimeoutMS": int(CONNECT_S * 1000),
        "socketTimeoutMS": int(SOCKET_S * 1000),
    }
    options.update(overrides)
    return MongoClient(uri, **options)


@pytest.fixture
def coll(proxy, mongodb_uri):
    client = client_for(f"{proxy.uri}/{mongodb_uri.rsplit('/', 1)[1]}")
    collection = client.get_default_database()["t"]
    collection.insert_one({"_id": "before", "n": 0})  # a pooled connection and a known server
    yield collection
    client.close()


def timed(fn):
    """(exception or None, seconds)."""
    start = time.monotonic()
    try:
        fn()
    except Exception as exc:  # noqa: BLE001 - the test inspects it
        return exc, time.monotonic() - start
    return None, time.monotonic() - start


def works_again(coll, key: str) -> None:
    """Pass mode: the same client stores and reads again (after its monitor's next check)."""

    def stored():
        try:
            coll.insert_one({"_id": key})
            return True
        except AutoReconnect:
            return False

    wait_for(stored, timeout=10, interval=0.05, what="writes through the proxy again")
    assert coll.find_one({"_id": key}) == {"_id": key}
    assert coll.count_documents({"_id": {"$in": ["before", key]}}) == 2


def test_pass_forwards_everything(proxy, coll):
    coll.insert_many([{"_id": i, "v": "x" * 1000} for i in range(300)])  # replies of many segments
    assert len(list(coll.find({"v": {"$exists": True}}).batch_size(50))) == 300
    assert proxy.connections_accepted >= 2  # the monitor's and the pool's


def test_down_nothing_listens_and_pymongo_waits_for_server_selection(proxy, coll):
    proxy.set_mode("down")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", proxy.port), timeout=1).close()
    exc, took = timed(lambda: coll.find_one({"_id": "before"}))  # the pooled connection was reset
    assert isinstance(exc, AutoReconnect) and took < GIVE_UP_S
    fresh = client_for(proxy.uri)
    exc, took = timed(lambda: fresh.admin.command("ping"))
    fresh.close()
    assert isinstance(exc, ServerSelectionTimeoutError) and "refused" in str(exc).lower()
    assert SELECTION_S * 0.9 <= took < SELECTION_S + 1.0  # it waited the whole selection time
    proxy.set_mode("pass")
    works_again(coll, "after-down")


def test_hung_accepts_and_never_answers_socket_timeouts(proxy, coll):
    proxy.set_mode("hung")
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=1) as raw:
        raw.settimeout(0.3)
        raw.sendall(b"\x00" * 16)
        with pytest.raises(TimeoutError):
            raw.recv(1)  # accepted, never answered
    exc, took = timed(lambda: coll.find_one({"_id": "before"}))
    assert isinstance(exc, AutoReconnect) and took < GIVE_UP_S
    assert took >= SOCKET_S * 0.9  # it waited on the socket, it was not refused
    fresh = client_for(proxy.uri)
    exc, took = timed(lambda: fresh.admin.command("ping"))
    fresh.close()
    assert isinstance(exc, ServerSelectionTimeoutError) and "timed out" in str(exc)
    assert took >= SELECTION_S * 0.9
    proxy.set_mode("pass")
    works_again(coll, "after-hung")


def test_slow_delays_every_reply_and_a_short_socket_timeout_gives_network_timeout(proxy, coll):
    proxy.set_mode("slow")
    for op in (lambda: coll.find_one({"_id": "before"}), lambda: coll.insert_one({"n": 1})):
        exc, took = timed(op)
        assert exc is None and took >= 0.2
    proxy.set_mode("slow", delay_s=0.35)
    exc, took = timed(lambda: coll.count_documents({}))
    assert exc is None and took >= 0.35
    impatient = client_for(proxy.uri, socketTimeoutMS=100)
    exc, took = timed(lambda: impatient["x"]["y"].find_one({}))
    impatient.close()
    assert isinstance(exc, NetworkTimeout)
    proxy.set_mode("pass", delay_s=1.0)
    works_again(coll, "after-slow")
    exc, took = timed(lambda: coll.find_one({"_id": "before"}))
    assert exc is None and took < 1.0  # the delay went with the mode


def test_refuse_accepts_and_resets(proxy, coll):
    proxy.set_mode("refuse")
    with pytest.raises(ConnectionResetError):  # at connect, send or receive: it is a race
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=1) as raw:
            raw.sendall(b"\x00" * 16)
            raw.recv(1)
    exc, took = timed(lambda: coll.find_one({"_id": "before"}))
    assert isinstance(exc, AutoReconnect) and took < GIVE_UP_S
    fresh = client_for(proxy.uri)
    exc, took = timed(lambda: fresh.admin.command("ping"))
    fresh.close()
    assert isinstance(exc, ServerSelectionTimeoutError) and "reset" in str(exc).lower()
    proxy.set_mode("pass")
    works_again(coll, "after-refuse")


def test_an_unknown_mode_is_refused(proxy):
    with pytest.raises(ValueError, match="unknown mode 'sleepy'"):
        proxy.set_mode("sleepy")
    assert proxy.mode == "pass"
