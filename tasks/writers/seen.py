"""Which records a worker already stored: the duplicate check of redundant feeders' copies.

Thin I/O on the current-state Redis around core/identity.py. Two calls per batch:

    drop_seen  one pipeline of SMISMEMBER (one per `seen:` set the batch touches): the records
               whose identity is in a set are dropped before any write
    mark       after the batch's writes SUCCEEDED (state written, history in MongoDB, nothing
               parked): one pipeline of SADD + EXPIRE INGEST_DEDUPE_TTL_S

The order is what makes dropping safe: an identity enters a set only after its record is
stored, so a dropped record is always one that is already in MongoDB and in the state. A worker
killed between its writes and `mark` leaves nothing marked (acks_late redelivers the batch and it
is written again, idempotently); a `mark` that fails is logged and forgotten (the other copy is
then written again too: a duplicate costs CPU, never data). Both copies handled at the same
moment may both be written: the writers are idempotent, so that is only the old cost.

A state Redis that fails (down, timeout) turns the check off in this process for STATE_SKIP_S,
as the history path does for state writes: a dead Redis costs each batch nothing extra. Like the
order-event script (redis_state.py), the scripts touch several keys: fine on one Redis, not on
Redis Cluster.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from typing import Any

import redis.exceptions
from redis.exceptions import NoScriptError

from core import keys
from core.identity import Identity, identity
from core.settings import WorkerSettings as Settings

log = logging.getLogger(__name__)

REDIS_DOWN: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    OSError,
)

# One command per batch each way (a pipeline of SMISMEMBER/SADD per set cost the worker ~9 us a
# record in redis-py's packing and parsing). KEYS: the sets; ARGV: per set, its member count
# and then its members (MARK: the TTL first). CHECK answers one '0'/'1' per member, in order.
CHECK = """
local out, a = {}, 1
for k = 1, #KEYS do
  local n = tonumber(ARGV[a])
  for i = a + 1, a + n do
    out[#out + 1] = redis.call('SISMEMBER', KEYS[k], ARGV[i])
  end
  a = a + n + 1
end
return table.concat(out)
"""
MARK = """
local ttl, a = ARGV[1], 2
for k = 1, #KEYS do
  local n = tonumber(ARGV[a])
  for i = a + 1, a + n, 1000 do
    redis.call('SADD', KEYS[k], unpack(ARGV, i, math.min(i + 999, a + n)))
  end
  redis.call('EXPIRE', KEYS[k], ttl)
  a = a + n + 1
end
return #KEYS
"""
SCRIPTS = {hashlib.sha1(src.encode()).hexdigest(): src for src in (CHECK, MARK)}
CHECK_SHA, MARK_SHA = SCRIPTS

Parts = list[tuple[str, list[dict]]]
# The identities of the records kept for writing, per part, grouped by `seen:` key
Marks = list[dict[str, list[str]]]


def _key_member(ident: Identity | None) -> tuple[str, str] | None:
    return None if ident is None else (keys.seen(ident[0], ident[1], ident[2]), ident[3])


class _Skip:
    """Per process: until when the check is off (monotonic seconds) after Redis failed."""

    until = 0.0


class Seen:
    def __init__(
        self,
        client: Any,
        settings: Settings,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        skip: type[_Skip] | _Skip = _Skip,
    ):
        self.client = client
        self.ttl_s = settings.dedupe_ttl_s
        self.skip_s = settings.state_skip_s
        self.monotonic = monotonic
        self.skip = skip

    def _off(self) -> bool:
        return self.ttl_s <= 0 or self.monotonic() < self.skip.until

    def _failed(self, what: str, exc: BaseException) -> None:
        self.skip.until = self.monotonic() + self.skip_s
        log.warning("duplicate check: %s failed (%r); off for %.1fs", what, exc, self.skip_s)

    def drop_seen(self, parts: Parts) -> tuple[Parts, list[int], Marks]:
        """(parts without the records already stored, how many were dropped per part, the kept
        records' identities to `mark` once they are stored)."""
        if self._off():
            return parts, [0] * len(parts), []
        # per record: its (`seen:` key, member), or None (no identity: always written)
        ids: list[list[tuple[str, str] | None]] = [
            [_key_member(identity(kind, rec)) for rec in records] for kind, records in parts
        ]
        wanted: dict[str, list[str]] = {}
        for per_part in ids:
            for km in per_part:
                if km is not None:
                    wanted.setdefault(km[0], []).append(km[1])
        found: dict[str, set[str]] = {}
        if wanted:
            try:
                flags = iter(self._call(CHECK_SHA, wanted))
                for key, members in wanted.items():
                    hits = {m for m in members if next(flags) == "1"}
                    if hits:
                        found[key] = hits
            except REDIS_DOWN as exc:
                self._failed("the check", exc)
                found = {}
        kept_parts: Parts = []
        dropped: list[int] = []
        marks: Marks = []
        for (kind, records), per_part in zip(parts, ids):
            kept: list[dict] = []
            part_marks: dict[str, list[str]] = {}
            for rec, km in zip(records, per_part):
                if km is not None:
                    if km[0] in found and km[1] in found[km[0]]:
                        continue
                    part_marks.setdefault(km[0], []).append(km[1])
                kept.append(rec)
            kept_parts.append((kind, kept))
            dropped.append(len(records) - len(kept))
            marks.append(part_marks)
        return kept_parts, dropped, marks

    def mark(self, marks: list[dict[str, list[str]]]) -> None:
        """Remember these identities as stored (call only after their writes succeeded)."""
        merged: dict[str, list[str]] = {}
        for part_marks in marks:
            for key, members in part_marks.items():
                merged.setdefault(key, []).extend(members)
        if not merged or self._off():
            return
        try:
            self._call(MARK_SHA, merged, self.ttl_s)
        except REDIS_DOWN as exc:
            self._failed("marking", exc)

    def _call(self, sha: str, members: dict[str, list[str]], *first: Any) -> str:
        args: list[Any] = list(first)
        for values in members.values():
            args.append(len(values))
            args += values
        try:
            reply = self.client.evalsha(sha, len(members), *members, *args)
        except NoScriptError:  # a restarted or flushed Redis: load and run again (idempotent)
            self.client.script_load(SCRIPTS[sha])
            reply = self.client.evalsha(sha, len(members), *members, *args)
        return reply.decode() if isinstance(reply, bytes) else str(reply)
