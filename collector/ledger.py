"""The feeder's Redis state: its gaps, watermarks, heartbeat (keys in core/keys.py). A thread
that writes periodically and pipelined, never per message; when Redis is down everything stays
buffered (gaps in a bounded queue, watermarks as latest values) and is retried. How a gap is
stored is core/gaps.py's (the workers record theirs the same way).

Startup gap: before writing any watermark this run, this feeder's own watermarks of its
previous run are read (wmf:<feeder_id>, never another feeder's); the first record of each
(channel, instId) in this run is compared with them (pipeline.startup_gaps). A feeder id that has
no own watermarks yet takes the shared wm:<channel>:<instId> only when it is its own or was
written before watermarks were per feeder (no `feeder` field): the upgrade of a single feeder
keeps its startup gap, a second feeder joining a shard does not take the first one's as its own.

Watermarks are written twice per change, in the same pipeline: into this feeder's own hash, and
into the shared wm:<channel>:<instId> through a Lua max (the shard's newest: what the sweep,
audit, derive and the read side use).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace

import orjson
import redis

from collector.coverage import CoverageTracker
from collector.pipeline import startup_gaps
from collector.supervisor import Supervisor
from core import coverage as coverage_store
from core import keys
from core.gaps import Gap, record_gap
from core.intervals import contributors, uncovered
from core.redis_clients import tls_kwargs
from core.settings import HEARTBEAT_EVERY_S, HEARTBEAT_LATE_S
from okx.clock import now_ms as clock_ms

log = logging.getLogger("collector.ledger")

GAPS_BUFFER = 50_000
COVERAGE_TRIM_EVERY_S = 60.0

# KEYS[1] wm:<channel>:<instId>; ARGV ts, id, seen_ms, feeder. Advances only: an older ts (or the
# same ts with a lower numeric id) from a slower feeder leaves the shard's newest alone.
ADVANCE_SHARED_MARK = """
local old = redis.call('HMGET', KEYS[1], 'ts', 'id')
local ots, nts = tonumber(old[1] or ''), tonumber(ARGV[1])
if ots and nts < ots then return 0 end
if ots and nts == ots then
  local oid, nid = tonumber(old[2] or ''), tonumber(ARGV[2])
  if oid and nid and nid < oid then return 0 end
end
redis.call('HSET', KEYS[1], 'ts', ARGV[1], 'id', ARGV[2], 'seen_ms', ARGV[3], 'feeder', ARGV[4])
return 1
"""


def shard_members(raw: dict, now_ms: int) -> dict[str, bool]:
    """feeder id -> live (heartbeat within HEARTBEAT_LATE_S) of a shard:<shard> hash; members
    older than SHARD_MEMBER_KEEP_S are left out. Pure."""
    out = {}
    for k, v in raw.items():
        fid = k.decode() if isinstance(k, bytes) else str(k)
        try:
            age_s = (now_ms - int(v)) / 1000
        except ValueError:
            continue
        if age_s <= keys.SHARD_MEMBER_KEEP_S:
            out[fid] = age_s <= HEARTBEAT_LATE_S
    return out


def mark_field(channel: str, inst_id: str) -> str:
    """A field of wmf:<feeder_id> (a hash field, not a key: it is spelled here)."""
    return f"{channel}:{inst_id}"


def parse_mark_field(name: str) -> tuple[str, str]:
    channel, _, inst_id = name.partition(":")
    return channel, inst_id


def previous_marks(
    feeder_id: str,
    wanted: list[tuple],
    own: dict[str, str],
    shared: list[dict[str, str]],
) -> dict[tuple, dict]:
    """The watermarks this feeder's startup gaps start from: its own hash's (field -> JSON),
    else, for a feeder with no own watermark at all, the shared one where it is this feeder's
    or a single feeder's from before per-feeder watermarks (no `feeder` field). Pure."""
    out: dict[tuple, dict] = {}
    if own:
        for field, raw in own.items():
            try:
                value = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue  # not what this code writes: no startup gap rather than a wrong one
            if isinstance(value, dict) and value.get("ts") is not None:
                key = parse_mark_field(field)
                out[key] = {k: str(v) for k, v in value.items()}
        return out
    for key, h in zip(wanted, shared):
        if h and h.get("feeder", feeder_id) == feeder_id:
            out[key] = h
    return out


class Ledger(threading.Thread):
    def __init__(
        self,
        redis_url: str,
        feeder_id: str,
        keys: list[tuple],
        *,
        shard: str = "default",
        max_silence_ms: int = 60_000,
        pull: Callable[[Ledger], None],
        on_gap_id: Callable[[str], None],
        status: Callable[[], dict],
        interval: float = 1.0,
        heartbeat_every: float = HEARTBEAT_EVERY_S,
        supervisor: Supervisor | None = None,
    ) -> None:
        super().__init__(name="ledger", daemon=True)
        self.client = redis.Redis.from_url(
            redis_url, socket_timeout=2, socket_connect_timeout=2, **tls_kwargs(redis_url)
        )
        self.feeder_id = feeder_id
        self.shard = shard
        self.host = socket.gethostname()
        self._advance = self.client.register_script(ADVANCE_SHARED_MARK)
        self.coverage = CoverageTracker(max_silence_ms)
        self._new_gaps: list[Gap] = []  # this feeder's gaps the coverage has not seen yet
        self._next_trim = 0.0
        self._first_seen: set = set()  # keys whose first record of this run the coverage has
        self.shard_members: dict[str, bool] = {}  # feeder id -> live, as of the last heartbeat
        self.keys = keys  # (channel, instId) planned this run
        self.pull = pull  # fills gaps/marks/first from the pipeline (locked)
        self.on_gap_id = on_gap_id
        self.status = status
        self.interval = interval
        self.heartbeat_every = heartbeat_every
        self.pending_gaps: deque[Gap] = deque(maxlen=GAPS_BUFFER)
        self.marks: dict[tuple, tuple] = {}
        self._written_marks: dict[tuple, tuple] = {}
        self.first: dict[tuple, tuple] = {}
        self.old_marks: dict[tuple, dict] | None = None
        self._checked: set = set()
        self.stopping = threading.Event()
        self.started_ms = clock_ms()
        self._next_heartbeat = 0.0
        self.redis_ok = True
        self.gaps_written = 0
        self.gap_ids: list[str] = []
        self.errors = 0
        self.supervisor = supervisor or Supervisor(self.stopping)
        self._checkpoint = self.supervisor.handle(self.name)

    def add_gaps(self, gaps: list[Gap]) -> None:
        if len(self.pending_gaps) + len(gaps) > GAPS_BUFFER:
            log.error("gap buffer full while Redis is down: oldest gap records lost")
        self.pending_gaps.extend(gaps)
        self._new_gaps.extend(gaps)

    def _track(self) -> None:
        """This cycle's gaps, then marks, into the coverage (collector/coverage.py says why in
        that order)."""
        gaps, self._new_gaps = self._new_gaps, []
        marks = self.marks
        for key, (ts, _rid, _count) in self.first.items():
            if key not in self._first_seen:
                self._first_seen.add(key)
                self.coverage.started(key, ts)
        for g in gaps:
            mark = marks.get(g.key)
            self.coverage.gap(g.key, g.start_ms, g.end_ms, mark[0] if mark else None)
        for key, (ts, _rid, _seen) in marks.items():
            self.coverage.mark(key, ts)

    def run(self) -> None:
        # A first cycle at once: the heartbeat tells `collector status` the feeder is up.
        self.supervisor.run(self.name, self._loop, stopping=self.stopping)
        self.cycle(final=True)

    def _loop(self) -> None:
        # cycle() catches what Redis raises; a bug anywhere else is the supervisor's (and the
        # pending gaps and watermarks stay in this object across the restart).
        checkpoint = self._checkpoint
        checkpoint()
        self.cycle()
        while not self.stopping.wait(self.interval):
            checkpoint()
            self.cycle()

    def cycle(self, final: bool = False) -> None:
        try:
            self.pull(self)
        except Exception:  # noqa: BLE001 - never let bookkeeping kill the thread
            log.exception("ledger: pulling state failed")
        self._track()
        try:
            self._flush(final)
            if not self.redis_ok:
                log.warning("redis back: ledger state written")
            self.redis_ok = True
        except Exception as exc:  # noqa: BLE001 - RedisError, OSError; never kill the thread
            self.errors += 1
            if self.redis_ok:
                log.error(
                    "redis unavailable for the ledger (%s): buffering %d gaps and the watermarks",
                    exc,
                    len(self.pending_gaps),
                )
            self.redis_ok = False

    def _covered_by(self, r: redis.Redis, gap: Gap) -> list[str]:
        """The other feeders of the shard whose published coverage already spans `gap` (then it
        is recorded closed: no repair task, no REST call); [] otherwise."""
        window = (gap.start_ms, gap.end_ms)
        cov = coverage_store.read(r, self.shard, gap.channel, gap.instId, *window)
        cov.pop(self.feeder_id, None)
        every = [iv for ivs in cov.values() for iv in ivs]
        if not every or uncovered(window, every):
            return []
        return contributors(window, cov)

    def _flush(self, final: bool) -> None:
        r = self.client
        now_ms = clock_ms()
        if self.old_marks is None:
            pipe = r.pipeline(transaction=False)
            pipe.hgetall(keys.feeder_watermarks(self.feeder_id))
            for key in self.keys:
                pipe.hgetall(keys.watermark_key(*key))
            own, *shared = pipe.execute()
            self.old_marks = previous_marks(
                self.feeder_id,
                self.keys,
                {k.decode(): v.decode() for k, v in own.items()},
                [{k.decode(): v.decode() for k, v in h.items()} for h in shared],
            )
        new_first = {k: v for k, v in self.first.items() if k not in self._checked}
        if new_first:
            self.add_gaps(startup_gaps(self.old_marks, new_first))
            self._checked.update(new_first)
        while self.pending_gaps:
            # The only writer of this feeder's gaps: no MULTI needed (the id is from INCR).
            found = self.pending_gaps[0]
            if "shard" not in dict(found.extra):  # whose coverage may close it (backfill)
                found = replace(found, extra=(*found.extra, ("shard", self.shard)))
            by = self._covered_by(r, found)
            gap = record_gap(r, found, self.feeder_id, now_ms, atomic=False, covered_by=by)
            self.pending_gaps.popleft()
            self.gaps_written += 1
            self.gap_ids.append(gap.id)
            log.warning(
                "gap %s: %s %s %s %s..%s ids %s..%s (%s)",
                gap.id,
                gap.cause,
                gap.channel,
                gap.instId,
                gap.start_ms,
                gap.end_ms,
                gap.start_id,
                gap.end_id,
                gap.reason,
            )
            if not by:
                self.on_gap_id(gap.id)
        changed = {k: v for k, v in self.marks.items() if self._written_marks.get(k) != v}
        covered = self.coverage.take()
        if covered or changed:
            # One pipeline for coverage and watermarks: a kill cannot leave the coverage's end
            # and this feeder's watermark (its next startup gap's start) a cycle apart.
            pipe = r.pipeline(transaction=False)
            if covered:
                now = time.monotonic()
                trim = now >= self._next_trim
                if trim:
                    self._next_trim = now + COVERAGE_TRIM_EVERY_S
                coverage_store.write(
                    pipe, self.shard, self.feeder_id, covered, now_ms=now_ms, trim=trim
                )
            if changed:
                own_key = keys.feeder_watermarks(self.feeder_id)
                own = {}
                for (channel, inst), (ts, rid, seen) in changed.items():
                    own[mark_field(channel, inst)] = orjson.dumps(
                        {"ts": str(ts), "id": str(rid), "seen_ms": str(seen)}
                    )
                    self._advance(
                        keys=[keys.watermark_key(channel, inst)],
                        args=[ts, str(rid), seen, self.feeder_id],
                        client=pipe,
                    )
                pipe.hset(own_key, mapping=own)
                pipe.expire(own_key, keys.FEEDER_WATERMARKS_TTL_S)
            try:
                pipe.execute()
            except Exception:
                self.coverage.put_back(covered)
                raise
            self._written_marks.update(changed)
        now = time.monotonic()
        if final or now >= self._next_heartbeat:
            self._next_heartbeat = now + self.heartbeat_every
            hb_key = keys.feeder_key(self.feeder_id)
            shard_key = keys.shard_key(self.shard)
            pipe = r.pipeline(transaction=False)
            if final:
                pipe.delete(hb_key)
                pipe.srem(keys.FEEDERS, self.feeder_id)
                pipe.hdel(shard_key, self.feeder_id)  # a clean stop: no longer one of the shard
            else:
                pipe.hset(shard_key, self.feeder_id, str(now_ms))
                pipe.expire(shard_key, keys.SHARD_MEMBER_KEEP_S)
                pipe.sadd(keys.SHARDS, self.shard)
                pipe.hset(
                    hb_key,
                    mapping={
                        "heartbeat_ms": str(now_ms),
                        "pid": str(os.getpid()),
                        "host": self.host,
                        "shard": self.shard,
                        "started_ms": str(self.started_ms),
                        "connections": orjson.dumps(self.status()).decode(),
                    },
                )
                pipe.expire(hb_key, keys.HEARTBEAT_TTL_S)
                pipe.sadd(keys.FEEDERS, self.feeder_id)
                pipe.hgetall(shard_key)
            replies = pipe.execute()
            if not final:
                self.shard_members = shard_members(replies[-1], now_ms)

    def stop(self, timeout: float = 3.0) -> None:
        self.stopping.set()
        self.join(timeout)
