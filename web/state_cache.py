"""The latest-state answers kept in memory while Redis says their keys are unchanged (pure).

Redis's server-assisted client-side caching (CLIENT TRACKING, docs/read-api.md "The
latest-state cache"): the lean path (web/lean_state.py, through web/cached_reads.py) reads on
a tracking connection (web/resp.py), Redis remembers which keys that connection read and pushes
an invalidation when one of them changes, and `StateCache` drops every body built from that key.
This module is the bookkeeping only, no I/O, so each rule below is tested on its own
(tests/test_web_state_cache.py, with a hypothesis state machine against a model of Redis).

- An entry is a response body, keyed by (endpoint, instId, query) and linked to the Redis keys
  it was built from. Bounded by count (WEB_STATE_CACHE_MAX) and bytes (MAX_BYTES), LRU.
- The read/invalidation race: a read's reply and an invalidation of its key can cross (the
  reply is handed to the waiting request a loop turn after it was parsed, and an invalidation
  parsed meanwhile is for a write the reply may predate). So a fetch takes a `Ticket` and marks
  each key "being fetched" (`mark`) before the read is sent; an invalidation of a marked key
  cancels the ticket, and a cancelled ticket's body is not stored (`put`): the documented guard.
- Only a live channel is trusted: entries are served only between `channel_up` and
  `channel_down` (the tracking connection), and only while the channel was heard from within
  LEASE_S (`channel_fresh`: a PING's reply proves every invalidation of a write before it
  arrived, since RESP3 pushes and replies share the connection in order). A down channel, a
  null invalidation (FLUSHALL, FLUSHDB, Redis forgetting its tracking table) flush everything,
  and a ticket begun before a flush or a reconnection never stores (its generation is old).
- An entry also carries the deadline of its keys' TTLs (from PTTL at read time), so a key that
  expired in Redis but is not yet evicted there is not served from memory.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

LEASE_S = 0.5  # serve from memory only if the channel answered a command sent this recently
PING_EVERY_S = 0.1  # how often the reads' glue pings the channel while requests come
MAX_BYTES = 32 * 1024 * 1024  # all bodies together, besides the entry count
MAX_BODY_BYTES = 256 * 1024  # a larger body is answered, never kept

CacheKey = tuple[str, str, bytes]  # (endpoint, instId, raw query)


@dataclass(eq=False)
class Ticket:
    """One fetch in flight: the generation it began in and the keys it has marked."""

    generation: int
    keys: list[str] = field(default_factory=list)
    cancelled: bool = False


@dataclass(slots=True)
class _Entry:
    body: bytes
    keys: tuple[str, ...]
    expires_at: float


class StateCache:
    """Bodies by CacheKey, each dropped when Redis invalidates a key it was built from."""

    def __init__(
        self, max_entries: int, *, lease_s: float = LEASE_S, max_bytes: int = MAX_BYTES
    ) -> None:
        self.max_entries, self.max_bytes, self.lease_s = max_entries, max_bytes, lease_s
        self._entries: OrderedDict[CacheKey, _Entry] = OrderedDict()
        self._by_key: dict[str, set[CacheKey]] = {}
        self._fetching: dict[str, list[Ticket]] = {}
        self.bytes = 0
        self.generation = 0
        self.live = False
        self.fresh_as_of = float("-inf")
        self.hits = self.misses = self.bypassed = 0
        self.invalidations = self.flushes = self.discarded = self.evictions = 0

    def __len__(self) -> int:
        return len(self._entries)

    # ----- the channel (web/resp.py's TrackingListener) ----------------------------------

    def channel_up(self, as_of: float) -> None:
        self._flush()
        self.generation += 1
        self.live, self.fresh_as_of = True, as_of

    def channel_down(self) -> None:
        if self.live or self._entries:
            self.flushes += 1
        self._flush()
        self.generation += 1
        self.live = False

    def channel_fresh(self, as_of: float) -> None:
        """Every invalidation of a write before `as_of` has been handled (a PING answered)."""
        if as_of > self.fresh_as_of:
            self.fresh_as_of = as_of

    def invalidate(self, keys: list[str] | None) -> None:
        if keys is None:  # FLUSHALL / FLUSHDB / tracking table reset: everything
            self.flushes += 1
            self._flush()
            self.generation += 1
            return
        for key in keys:
            self.invalidations += 1
            for ticket in self._fetching.get(key, ()):
                ticket.cancelled = True
            for ck in self._by_key.pop(key, ()):
                self._drop(ck, key)

    # ----- reads ------------------------------------------------------------------------

    def usable(self, now: float) -> bool:
        """The channel is up and was heard from within the lease."""
        return self.live and now - self.fresh_as_of <= self.lease_s

    def get(self, ck: CacheKey, now: float) -> bytes | None:
        if not self.usable(now):
            self.bypassed += 1
            return None
        entry = self._entries.get(ck)
        if entry is None or entry.expires_at <= now:
            self.misses += 1
            return None
        self._entries.move_to_end(ck)
        self.hits += 1
        return entry.body

    def begin(self) -> Ticket | None:
        """A ticket for a fetch, or None when nothing may be stored (channel down)."""
        return Ticket(self.generation) if self.live else None

    def mark(self, ticket: Ticket, key: str) -> None:
        """`key` is about to be read for `ticket`: call before the command is sent."""
        ticket.keys.append(key)
        self._fetching.setdefault(key, []).append(ticket)

    def put(self, ticket: Ticket, ck: CacheKey, body: bytes, expires_at: float) -> bool:
        """Keep `body` unless its fetch was overtaken (cancelled, older generation, down)."""
        if ticket.cancelled or ticket.generation != self.generation or not self.live:
            self.discarded += 1
            return False
        if len(body) > MAX_BODY_BYTES or not ticket.keys:
            return False
        if ck in self._entries:
            self._drop(ck)
        entry = _Entry(body, tuple(dict.fromkeys(ticket.keys)), expires_at)
        self._entries[ck] = entry
        self.bytes += len(body)
        for key in entry.keys:
            self._by_key.setdefault(key, set()).add(ck)
        while len(self._entries) > self.max_entries or self.bytes > self.max_bytes:
            self.evictions += 1
            self._drop(next(iter(self._entries)))
        return True

    def end(self, ticket: Ticket) -> None:
        """The fetch is over (stored or not, or failed): unmark its keys."""
        for key in ticket.keys:
            waiting = self._fetching.get(key)
            if waiting is None:
                continue
            try:
                waiting.remove(ticket)
            except ValueError:
                pass
            if not waiting:
                del self._fetching[key]

    def stats(self) -> dict[str, Any]:
        return {
            "hits": self.hits,
            "misses": self.misses,
            "bypassed": self.bypassed,
            "invalidations": self.invalidations,
            "flushes": self.flushes,
            "discarded": self.discarded,
            "evictions": self.evictions,
            "entries": len(self._entries),
            "bytes": self.bytes,
            "live": self.live,
        }

    # ----- internals --------------------------------------------------------------------

    def _drop(self, ck: CacheKey, unlinked: str | None = None) -> None:
        entry = self._entries.pop(ck)
        self.bytes -= len(entry.body)
        for key in entry.keys:
            if key == unlinked:
                continue
            linked = self._by_key.get(key)
            if linked is not None:
                linked.discard(ck)
                if not linked:
                    del self._by_key[key]

    def _flush(self) -> None:
        self._entries.clear()
        self._by_key.clear()
        self.bytes = 0
