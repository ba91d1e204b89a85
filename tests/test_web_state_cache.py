"""The latest-state cache's bookkeeping (web/state_cache.py) and its read/invalidation race
(web/cached_reads.py over web/resp.py's real protocol object, fed bytes by hand), no server.

The state machine runs StateCache against a model of one Redis connection in RESP3: writes
bump a key's version and, when the connection tracks the key, queue an invalidation on the
connection's one ordered stream; a read's reply joins the same stream; the request resumes (and
stores) some steps after its reply was delivered, as on the event loop. The invariant: a hit is
the current content, except for a key whose invalidation is still on its way (the delivery
delay the design accepts), and nothing is served while the channel is down.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from core import keys
from web.cached_reads import CachedReads, cached_reads
from web.lean_state import HANDLERS
from web.metrics import cache_metrics
from web.resp import RespClient, _Protocol
from web.state_cache import MAX_BODY_BYTES, StateCache

INST = "BTC-USDT"
NOW = 1000.0


def live_cache(max_entries: int = 10, **kw) -> StateCache:
    cache = StateCache(max_entries, **kw)
    cache.channel_up(NOW)
    return cache


def stored(cache: StateCache, ck, body: bytes, *deps: str, expires_at=float("inf")) -> bool:
    ticket = cache.begin()
    assert ticket is not None
    for key in deps:
        cache.mark(ticket, key)
    try:
        return cache.put(ticket, ck, body, expires_at)
    finally:
        cache.end(ticket)


CK = ("ticker", INST, b"")


def test_a_stored_body_is_served_until_its_key_is_invalidated():
    cache = live_cache()
    assert cache.get(CK, NOW) is None and cache.misses == 1
    assert stored(cache, CK, b"v1", "ticker:BTC-USDT")
    assert cache.get(CK, NOW) == b"v1" and cache.hits == 1
    cache.invalidate(["other"])
    assert cache.get(CK, NOW) == b"v1"
    cache.invalidate(["ticker:BTC-USDT"])
    assert cache.get(CK, NOW) is None and len(cache) == 0 and cache.bytes == 0


def test_one_key_invalidates_every_body_built_from_it_and_only_those():
    cache = live_cache()
    depth3, depth5 = ("book", INST, b"depth=3"), ("book", INST, b"")
    top1 = ("book", "ETH-USDT", b"")
    stored(cache, depth3, b"b3", "books5:BTC-USDT")
    stored(cache, depth5, b"b5", "books5:BTC-USDT")
    stored(cache, top1, b"t1", "books5:ETH-USDT", "book:ETH-USDT")  # books5 absent, then top1
    cache.invalidate(["books5:BTC-USDT"])
    assert cache.get(depth3, NOW) is None and cache.get(depth5, NOW) is None
    assert cache.get(top1, NOW) == b"t1"
    cache.invalidate(["books5:ETH-USDT"])  # the books5 that was missing appeared
    assert cache.get(top1, NOW) is None and cache.stats()["entries"] == 0


def test_an_invalidation_during_the_fetch_cancels_storing_its_reply():
    cache = live_cache()
    ticket = cache.begin()
    cache.mark(ticket, "ticker:BTC-USDT")
    cache.invalidate(["ticker:BTC-USDT"])  # lands while the read is in flight
    assert not cache.put(ticket, CK, b"maybe stale", float("inf"))
    cache.end(ticket)
    assert cache.get(CK, NOW) is None and cache.discarded == 1
    assert not cache._fetching  # unmarked


@pytest.mark.parametrize("overtake", ["flushall", "down", "down_up"])
def test_a_fetch_begun_before_a_flush_or_reconnect_never_stores(overtake):
    cache = live_cache()
    ticket = cache.begin()
    cache.mark(ticket, "ticker:BTC-USDT")
    if overtake == "flushall":
        cache.invalidate(None)
    else:
        cache.channel_down()
        if overtake == "down_up":
            cache.channel_up(NOW + 1)
    assert not cache.put(ticket, CK, b"x", float("inf"))
    assert cache.get(CK, NOW + 1) is None


def test_flush_and_channel_down_empty_the_cache_and_down_serves_nothing():
    cache = live_cache()
    stored(cache, CK, b"v", "k")
    cache.invalidate(None)
    assert len(cache) == 0 and cache.flushes == 1
    stored(cache, CK, b"v", "k")
    cache.channel_down()
    assert len(cache) == 0 and cache.flushes == 2 and not cache.live
    assert cache.begin() is None  # nothing may be stored while down
    assert cache.get(CK, NOW) is None and cache.bypassed == 1


def test_nothing_is_served_once_the_channel_is_silent_past_the_lease():
    cache = live_cache(lease_s=0.5)
    stored(cache, CK, b"v", "k")
    assert cache.get(CK, NOW + 0.5) == b"v"
    assert cache.get(CK, NOW + 0.51) is None and cache.bypassed == 1
    cache.channel_fresh(NOW + 0.4)  # a PING sent at +0.4 answered
    assert cache.get(CK, NOW + 0.9) == b"v"
    cache.channel_fresh(NOW)  # an older proof does not move the mark back
    assert cache.get(CK, NOW + 0.9) == b"v"


def test_an_entry_past_its_keys_ttl_is_not_served():
    cache = live_cache(lease_s=100)
    stored(cache, CK, b"v", "k", expires_at=NOW + 2)
    assert cache.get(CK, NOW + 1.99) == b"v"
    assert cache.get(CK, NOW + 2) is None


def test_bounded_by_count_and_bytes_least_recently_used_out():
    cache = live_cache(max_entries=3, max_bytes=1000)
    for i in range(3):
        stored(cache, ("ticker", f"I{i}", b""), b"x" * 10, f"k{i}")
    cache.get(("ticker", "I0", b""), NOW)  # I0 is used: I1 is now the oldest
    stored(cache, ("ticker", "I3", b""), b"x" * 10, "k3")
    assert cache.get(("ticker", "I1", b""), NOW) is None
    assert cache.get(("ticker", "I0", b""), NOW) == b"x" * 10 and cache.evictions == 1
    stored(cache, ("ticker", "big", b""), b"y" * 990, "kb")  # over the byte budget
    assert cache.bytes <= 1000 and cache.get(("ticker", "big", b""), NOW) is not None
    assert not stored(cache, ("ticker", "huge", b""), b"z" * (MAX_BODY_BYTES + 1), "kh")
    assert cache._by_key.keys() == {"k0", "kb"}  # evicted entries unlinked from their keys


def test_metrics_show_the_counters():
    cache = live_cache()
    stored(cache, CK, b"v", "k")
    cache.get(CK, NOW)
    text = {m.name: m.samples[0].value for m in cache_metrics(cache.stats(), 7)}
    assert text["web_state_cache_hits"] == 1 and text["web_lean_answered"] == 7
    assert text["web_state_cache_live"] == 1 and text["web_state_cache_entries"] == 1
    assert {m.name for m in cache_metrics(None, 0)} == {
        "web_lean_answered",
        "web_state_cache_enabled",
    }


def test_the_cache_is_off_without_a_push_channel_or_when_set_to_zero():
    import fakeredis

    assert cached_reads(fakeredis.FakeAsyncRedis(), 100) is None
    assert cached_reads(RespClient(), 0) is None
    reads = cached_reads(RespClient(), 100)
    assert reads is not None and reads.client.tracking is reads.cache


# ----- the race on the real protocol object, fed by hand -------------------------------------


class FakeTransport:
    def __init__(self) -> None:
        self.written = b""

    def write(self, data: bytes) -> None:
        self.written += data

    def abort(self) -> None:
        pass


TICKER_KEY = keys.ticker(INST)
HASH = b"%2\r\n$4\r\nlast\r\n$5\r\n35000\r\n$2\r\nts\r\n$1\r\n1\r\n"  # RESP3 map
PTTL = b":-1\r\n"
PUSH = b">2\r\n$10\r\ninvalidate\r\n*1\r\n$%d\r\n%s\r\n" % (len(TICKER_KEY), TICKER_KEY.encode())
BODY = b'{"last":"35000","ts":"1"}'


async def _wired():
    cache = StateCache(10)
    client = RespClient(tracking=cache)
    proto, transport = _Protocol(), FakeTransport()
    proto.connection_made(transport)  # type: ignore[arg-type]
    proto.listener = cache
    cache.channel_up(time.monotonic())
    client._proto, client._loop = proto, asyncio.get_running_loop()
    reads = CachedReads(cache, client)
    reads._pinged_at = float("inf")  # no PING in these byte-exact exchanges
    return cache, proto, transport, reads


async def _sent(transport: FakeTransport, n: int) -> None:
    for _ in range(100):
        if transport.written.count(b"*") >= n:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"not sent: {transport.written!r}")


def _ask(reads: CachedReads):
    return asyncio.get_running_loop().create_task(
        reads.body("ticker", INST, b"", HANDLERS["ticker"], {})
    )


@pytest.mark.parametrize(
    "stream, kept",
    [
        (HASH + PTTL, True),  # no write meanwhile: kept
        (PUSH + HASH + PTTL, False),  # a write before the read ran on the server
        (HASH + PTTL + PUSH, False),  # a write after it, parsed before the request resumes
        (HASH + PUSH + PTTL, False),  # between the two replies
    ],
    ids=["no-write", "push-first", "push-after", "push-between"],
)
def test_a_reply_crossed_by_an_invalidation_is_answered_but_not_kept(stream, kept):
    async def go():
        cache, proto, transport, reads = await _wired()
        task = _ask(reads)
        await _sent(transport, 2)  # HGETALL and PTTL, one write
        assert b"HGETALL" in transport.written and b"PTTL" in transport.written
        proto.data_received(stream)  # one TCP read: replies and push parsed in one go
        assert await task == BODY  # the request gets its reply either way
        return cache, transport, reads

    cache, transport, reads = asyncio.run(go())
    assert (len(cache) == 1) is kept and cache.discarded == (0 if kept else 1)


def test_a_hit_sends_nothing_to_redis_and_a_later_push_drops_it():
    async def go():
        cache, proto, transport, reads = await _wired()
        task = _ask(reads)
        await _sent(transport, 2)
        proto.data_received(HASH + PTTL)
        assert await task == BODY
        before = transport.written
        assert await _ask(reads) == BODY  # from memory
        assert transport.written == before and cache.hits == 1
        proto.data_received(PUSH)  # the ticker changed
        assert len(cache) == 0
        task = _ask(reads)
        await _sent(transport, 4)  # read again
        proto.data_received(HASH + PTTL)
        assert await task == BODY

    asyncio.run(go())


def test_a_lost_connection_flushes_before_any_waiting_request_resumes():
    async def go():
        cache, proto, transport, reads = await _wired()
        task = _ask(reads)
        await _sent(transport, 2)
        proto.data_received(HASH)  # half the answer, then the connection goes
        proto.connection_lost(None)
        assert not cache.live and len(cache) == 0
        with pytest.raises(Exception, match="closed the connection"):
            await task
        return cache

    cache = asyncio.run(go())
    assert len(cache) == 0 and not cache._fetching


# ----- the bookkeeping against a model of one tracking connection ----------------------------

KEYS = ("a", "b", "c")
CKS = {("x", "1", b""): ("a",), ("y", "1", b""): ("a", "b"), ("z", "1", b""): ("c",)}


class CacheAgainstRedis(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.cache = StateCache(2, lease_s=float("inf"))
        self.versions = dict.fromkeys(KEYS, 0)
        self.tracked: set[str] = set()
        self.stream: list[tuple[str, object]] = []  # what the connection will deliver, in order
        self.fetches: list[dict] = []  # in flight: sent, read on the server, reply delivered
        self.up()

    def content(self, ck) -> bytes:
        return repr([self.versions[k] for k in CKS[ck]]).encode()

    @rule()
    def up(self) -> None:
        if not self.cache.live:
            self.cache.channel_up(0.0)

    @rule(ck=st.sampled_from(sorted(CKS)))
    def fetch(self, ck) -> None:
        if self.cache.get(ck, 1.0) is not None:
            return
        ticket = self.cache.begin()
        if ticket is None:
            return
        for key in CKS[ck]:
            self.cache.mark(ticket, key)
        self.fetches.append({"ck": ck, "ticket": ticket, "value": None, "delivered": False})

    @precondition(lambda self: any(f["value"] is None for f in self.fetches))
    @rule(data=st.data())
    def server_reads(self, data) -> None:
        fetch = data.draw(st.sampled_from([f for f in self.fetches if f["value"] is None]))
        fetch["value"] = self.content(fetch["ck"])
        self.tracked |= set(CKS[fetch["ck"]])
        self.stream.append(("reply", fetch))

    @rule(key=st.sampled_from(KEYS))
    def write(self, key) -> None:
        self.versions[key] += 1
        if key in self.tracked:  # Redis invalidates once, then forgets the key for us
            self.tracked.discard(key)
            self.stream.append(("invalidate", [key]))

    @rule(written=st.sets(st.sampled_from(KEYS), min_size=2))
    def write_in_one_transaction(self, written) -> None:  # MULTI/EXEC: one message, many keys
        for key in written:
            self.versions[key] += 1
        invalidated = sorted(written & self.tracked)
        self.tracked -= written
        if invalidated:
            self.stream.append(("invalidate", invalidated))

    @rule()
    def flushall(self) -> None:
        for key in KEYS:
            self.versions[key] += 1
        self.tracked.clear()
        self.stream.append(("invalidate", None))

    @precondition(lambda self: self.stream)
    @rule()
    def deliver(self) -> None:
        kind, what = self.stream.pop(0)
        if kind == "invalidate":
            self.cache.invalidate(what)  # type: ignore[arg-type]
        else:
            what["delivered"] = True  # type: ignore[index]

    @precondition(lambda self: any(f["delivered"] for f in self.fetches))
    @rule(data=st.data())
    def resume(self, data) -> None:
        fetch = data.draw(st.sampled_from([f for f in self.fetches if f["delivered"]]))
        self.fetches.remove(fetch)
        self.cache.put(fetch["ticket"], fetch["ck"], fetch["value"], float("inf"))
        self.cache.end(fetch["ticket"])

    @rule()
    def connection_lost(self) -> None:
        self.cache.channel_down()
        for fetch in self.fetches:
            self.cache.end(fetch["ticket"])  # their calls fail
        self.fetches.clear()
        self.stream.clear()
        self.tracked.clear()  # a new connection tracks nothing yet

    @invariant()
    def hits_are_current_but_for_invalidations_on_their_way(self) -> None:
        pending = [what for kind, what in self.stream if kind == "invalidate"]
        for ck, deps in CKS.items():
            body = self.cache._entries.get(ck)
            if body is None:
                continue
            assert self.cache.live
            if body.body != self.content(ck):
                assert None in pending or any(set(deps) & set(p or ()) for p in pending), ck
        assert len(self.cache) <= 2


CacheAgainstRedis.TestCase.settings = settings(max_examples=1000, stateful_step_count=30)
test_the_cache_against_a_model_of_redis = CacheAgainstRedis.TestCase
