"""web/resp.py's RespClient against a real redis-server: the same answers as redis-py, in order
under concurrency on one connection, credentials and databases, and the failure rules (timeout,
lost connection, refused AUTH, error replies) with messages that never hold the password."""

from __future__ import annotations

import asyncio
import socket
import threading

import pytest
import redis

from web.resp import RespClient

pytestmark = pytest.mark.integration


@pytest.fixture
def r(redis_url):
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


def run(coro):
    return asyncio.run(coro)


def test_replies_equal_redis_py(r):
    r.hset("h", mapping={"a": "1", "px": "35000.5", "name": "ünï €"})
    r.zadd("z", {f'{{"tradeId":"{i}"}}': i for i in range(20)})
    c = RespClient.like(r)

    async def go():
        return (
            await c.hgetall("h"),
            await c.hgetall("missing"),
            await c.zrevrange("z", 0, 4),
            await c.zrevrange("z", 0, 999),
            await c.zrevrange("missing", 0, 9),
        )

    h, empty, top5, every, none = run(go())
    assert h == r.hgetall("h") and h["name"] == "ünï €"
    assert empty == {} and none == []
    assert top5 == r.zrevrange("z", 0, 4) and every == r.zrevrange("z", 0, 999)


def test_concurrent_calls_share_one_connection_and_get_their_own_replies(r):
    for i in range(300):
        r.hset(f"k{i}", mapping={"i": str(i)})
    c = RespClient.like(r)
    connects = []
    real_connect = c._connect

    async def counted_connect():
        connects.append(1)
        return await real_connect()

    c._connect = counted_connect  # type: ignore[method-assign]

    async def go():
        first, *replies, last = await asyncio.gather(
            c.execute("CLIENT", "ID"),
            *(c.hgetall(f"k{i}") for i in range(300)),
            c.execute("CLIENT", "ID"),
        )
        return first, replies, last

    first, replies, last = run(go())
    assert [int(h["i"]) for h in replies] == list(range(300))
    # one connection for all 300, made once (counting the server's clients would also count
    # other tests' connections that are still closing on the shared redis-server)
    assert connects == [1] and first == last


def test_a_selected_database_and_acl_credentials(r, redis_url):
    r.execute_command("ACL", "SETUSER", "lean", "on", ">pw-lean-42", "~*", "+@all")
    try:
        other = redis.Redis.from_url(redis_url.rsplit("/", 1)[0] + "/3", decode_responses=True)
        other.hset("only-in-3", "f", "v")
        url = f"redis://lean:pw-lean-42@127.0.0.1:{r.connection_pool.connection_kwargs['port']}/3"
        c = RespClient.from_url(url, 2.0)
        assert "pw-lean-42" not in repr(c)
        assert run(c.hgetall("only-in-3")) == {"f": "v"}
        assert r.hgetall("only-in-3") == {}  # db 0 has no such key
        wrong = RespClient.from_url(url.replace("pw-lean-42", "nope"), 2.0)
        with pytest.raises(redis.AuthenticationError) as err:
            run(wrong.hgetall("only-in-3"))
        assert "nope" not in str(err.value) and "pw-lean" not in str(err.value)
        other.delete("only-in-3")
        other.close()
    finally:
        r.execute_command("ACL", "DELUSER", "lean")


def test_an_error_reply_is_a_response_error_and_the_connection_stays_usable(r):
    r.set("s", "plain")
    r.hset("h", "a", "1")
    c = RespClient.like(r)

    async def go():
        with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
            await c.hgetall("s")
        return await c.hgetall("h")

    assert run(go()) == {"a": "1"}


def test_a_killed_connection_is_reconnected_on_the_next_call(r):
    r.hset("h", "a", "1")
    c = RespClient.like(r)

    async def go():
        assert await c.hgetall("h") == {"a": "1"}
        my_id = await c.execute("CLIENT", "ID")
        r.execute_command("CLIENT", "KILL", "ID", str(my_id))
        await asyncio.sleep(0)  # let the loop see the close
        for _ in range(50):  # the first call may still meet the dying connection
            try:
                return await c.hgetall("h"), await c.execute("CLIENT", "ID"), my_id
            except redis.ConnectionError:
                await asyncio.sleep(0.01)
        raise AssertionError("never reconnected")

    h, new_id, old_id = run(go())
    assert h == {"a": "1"} and new_id != old_id


class _Silent:
    """A TCP server that accepts and reads but never answers (a hung Redis), or closes each
    connection as soon as a command arrives (`close=True`)."""

    def __init__(self, close: bool = False) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.close, self.conns = close, []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            if self.close:
                conn.recv(100)
                conn.close()

    def stop(self) -> None:
        self.sock.close()
        for conn in self.conns:
            conn.close()


def test_no_reply_within_the_timeout_is_a_timeout_error_naming_the_host():
    server = _Silent()
    try:
        c = RespClient("127.0.0.1", server.port, password="secret-pw", timeout_s=0.3)
        with pytest.raises(redis.TimeoutError) as err:
            run(c.hgetall("h"))
        assert f"127.0.0.1:{server.port}" in str(err.value) and "secret-pw" not in str(err.value)
    finally:
        server.stop()


def test_a_connection_closed_under_pending_calls_fails_them_all():
    server = _Silent(close=True)
    try:
        c = RespClient("127.0.0.1", server.port, timeout_s=5)

        async def go():
            return await asyncio.gather(
                *(c.hgetall(f"k{i}") for i in range(5)), return_exceptions=True
            )

        errors = run(go())
        assert all(isinstance(e, redis.ConnectionError) for e in errors), errors
    finally:
        server.stop()


def test_nothing_listening_is_a_connection_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    c = RespClient("127.0.0.1", port, timeout_s=1)
    with pytest.raises(redis.ConnectionError, match=f"127.0.0.1:{port}"):
        run(c.hgetall("h"))


def test_from_url_takes_host_port_db_and_refuses_tls():
    c = RespClient.from_url("redis://u:p%40ss@redis.internal:6390/4?socket_timeout=9", 2.5)
    assert (c.host, c.port, c.db, c.timeout_s) == ("redis.internal", 6390, 4, 2.5)
    assert "p@ss" not in repr(c)
    u = RespClient.from_url("unix:///tmp/redis.sock?db=2", 1)
    assert (u.path, u.db) == ("/tmp/redis.sock", 2)
    with pytest.raises(ValueError, match="TLS"):
        RespClient.from_url("rediss://:pw@h:6380", 1)


def test_execute_many_pipelines_and_an_error_reply_leaves_the_connection_in_step(r):
    r.hset("h", mapping={"a": "1"})
    r.pexpire("h", 60_000)
    c = RespClient.like(r)

    async def go():
        flat, pttl = await c.execute_many(("HGETALL", "h"), ("PTTL", "h"))
        with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
            await c.execute_many(("INCR", "h"), ("PTTL", "missing"))
        after = await c.hgetall("h")  # the error's neighbour reply was read too
        await c.aclose()
        return flat, pttl, after

    flat, pttl, after = run(go())
    assert flat == ["a", "1"] and 0 < pttl <= 60_000 and after == {"a": "1"}


def test_a_tracking_client_speaks_resp3_and_reports_its_channel(r):
    events = []

    class Listener:
        def channel_up(self, as_of):
            events.append("up")

        def channel_down(self):
            events.append("down")

        def invalidate(self, keys):
            events.append(("invalidate", keys))

    r.hset("h", mapping={"a": "1"})
    c = RespClient.like(r).twin(tracking=Listener())

    async def go():
        assert await c.hgetall("h") == {"a": "1"}  # a RESP3 map, read as a dict
        r.hset("h", "a", "2")
        for _ in range(500):
            if ("invalidate", ["h"]) in events:
                break
            await asyncio.sleep(0.01)
        await c.aclose()

    run(go())
    assert events == ["up", ("invalidate", ["h"]), "down"]
