"""Parked history: batches whose MongoDB write waits for the breaker, in Redis, bounded in bytes.

    history:pending        list of entries, oldest first (RPUSH new, LPOP old)
    history:draining       the chunk one drain task took out of it (still counted)
    history:pending:bytes  bytes of both lists (one counter, kept by the scripts)

An entry is one batch's good records, zlib-compressed JSON (level 1: ~6x smaller for trades and
books, ~0.1 ms a batch): {"parts": [[kind, records], ...], "parked_ms": ms}. Parking is one
script call: push, and while the bytes exceed HISTORY_PENDING_MAX_BYTES, pop the oldest
entries and hand them back; the caller records them as gaps (overflow.py), so an outage longer
than the bound can hold costs a recorded, repairable window, never an out-of-memory broker.

Draining moves a chunk to history:draining in one script (`take`), writes it, then deletes it
(`done`, checked against the chunk's first entry, so a drain whose lease ran out cannot delete the
next drain's chunk). A drain that dies in between leaves the chunk there; the next one writes it
again first (the writes are idempotent): at least once, nothing lost.
"""

from __future__ import annotations

import time
import zlib
from typing import Any

import orjson

from core import keys

Parts = list[tuple[str, list[dict]]]

# KEYS: pending, bytes. ARGV: entry, max bytes, low water. -> the evicted (oldest) entries.
# Over the bound, evict down to the low water (3/4): gaps come in a few wide windows, not one
# per batch.
PUSH = """
redis.call('RPUSH', KEYS[1], ARGV[1])
local total = redis.call('INCRBY', KEYS[2], string.len(ARGV[1]))
local evicted = {}
if total <= tonumber(ARGV[2]) then return evicted end
local low = tonumber(ARGV[3])
while total > low do
  local old = redis.call('LPOP', KEYS[1])
  if not old then break end
  total = redis.call('DECRBY', KEYS[2], string.len(old))
  table.insert(evicted, old)
end
return evicted
"""

# KEYS: pending, draining. ARGV: max bytes. -> the chunk (the one left by a lost drain, if any)
TAKE = """
local left = redis.call('LRANGE', KEYS[2], 0, -1)
if #left > 0 then return left end
local out = {}
local size = 0
while size < tonumber(ARGV[1]) do
  local e = redis.call('LPOP', KEYS[1])
  if not e then break end
  redis.call('RPUSH', KEYS[2], e)
  table.insert(out, e)
  size = size + string.len(e)
end
return out
"""

# KEYS: draining, bytes. ARGV: the chunk's first entry (a few KB). -> bytes released
DONE = """
local first = redis.call('LINDEX', KEYS[1], 0)
if not first or first ~= ARGV[1] then return 0 end
local n = 0
for _, e in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do n = n + string.len(e) end
redis.call('DEL', KEYS[1])
local left = redis.call('DECRBY', KEYS[2], n)
if left < 0 then redis.call('SET', KEYS[2], 0) end
return n
"""


def encode(parts: Parts, parked_ms: int | None = None) -> bytes:
    ms = int(time.time() * 1000) if parked_ms is None else parked_ms
    return zlib.compress(orjson.dumps({"parts": parts, "parked_ms": ms}), 1)


def decode(entry: bytes) -> dict[str, Any]:
    """An entry back: {"parts": [[kind, records], ...], "parked_ms": ms}."""
    return orjson.loads(zlib.decompress(entry))


def merge(entries: list[bytes]) -> Parts:
    """Every record of `entries`, grouped by kind (one insert per kind for a whole chunk)."""
    by_kind: dict[str, list[dict]] = {}
    for entry in entries:
        for kind, records in decode(entry)["parts"]:
            by_kind.setdefault(kind, []).extend(records)
    return list(by_kind.items())


class Pending:
    """The parked history in Redis `client` (the broker Redis)."""

    def __init__(self, client: Any, max_bytes: int):
        self.client = client
        self.max_bytes = max_bytes
        self._push = client.register_script(PUSH)
        self._take = client.register_script(TAKE)
        self._done = client.register_script(DONE)

    def park(self, parts: Parts) -> list[bytes]:
        """Park one batch's records; returns the entries evicted to stay within the bound."""
        return list(
            self._push(
                keys=[keys.HISTORY_PENDING, keys.HISTORY_PENDING_BYTES],
                args=[encode(parts), self.max_bytes, self.max_bytes * 3 // 4],
            )
        )

    def take(self, max_bytes: int) -> list[bytes]:
        return list(
            self._take(keys=[keys.HISTORY_PENDING, keys.HISTORY_DRAINING], args=[max_bytes])
        )

    def done(self, chunk: list[bytes]) -> int:
        if not chunk:
            return 0
        return int(
            self._done(keys=[keys.HISTORY_DRAINING, keys.HISTORY_PENDING_BYTES], args=[chunk[0]])
        )

    def size(self) -> int:
        return int(self.client.get(keys.HISTORY_PENDING_BYTES) or 0)

    def entries(self) -> int:
        return int(self.client.llen(keys.HISTORY_PENDING)) + int(
            self.client.llen(keys.HISTORY_DRAINING)
        )
