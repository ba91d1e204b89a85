"""The workers' side of the gap ledger (keys in core/keys.py): claim a gap under a lease,
save the resume cursor after every page, finish it, create manual and stale gaps (recorded as
the feeder records its own: core/gaps.py).

Every transition is one Lua script, so it is atomic against other workers and the sweep:

    open ──claim──> filling ──finish──> filled | unrepairable (reason)
                       └──cover──> covered (covered_by, split_into: tasks/backfill/coverage.py)
      failed ──claim──┘  │ │ └──release (transient error, a time limit)──> open
                         │ └──fail (reason, retry_at)──> failed (the sweep retries it)
                         └──lease expired──> claimable again (a killed worker's gap)

A claim writes `owner` (a random token per run) and `lease_until`; `progress` and `finish` only
apply while the caller still owns the gap, so a worker that lost its lease (it stalled past the
expiry and someone else took over) stops instead of writing over the new owner's cursor.
Fields added to the feeder's gap hash: owner, lease_until, attempts, cursor, written, pages,
enqueued_ms, done_ms, last_error, failures, retry_at.

`failed` (a manual backfill's failed attempt, or a failed retry of a failed gap) is terminal for
the attempt, not for the gap: it stays in gaps:open with the failure as its `reason` and the
time the beat sweep may try again as `retry_at` (sweep.py), until BACKFILL_MAX_ATTEMPTS.
"""

from __future__ import annotations

import logging
from typing import Any

from core import keys
from core.gaps import Gap, record_gap

log = logging.getLogger(__name__)

CLAIM = """
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return {0, 'missing'} end
if st == 'filled' or st == 'unrepairable' or st == 'covered' then return {0, st} end
local now = tonumber(ARGV[2])
if st == 'filling' then
  local lease = tonumber(redis.call('HGET', KEYS[1], 'lease_until') or '0') or 0
  if lease > now then return {0, 'busy'} end
end
redis.call('HSET', KEYS[1], 'status', 'filling', 'owner', ARGV[1],
           'lease_until', tostring(now + tonumber(ARGV[3])), 'updated_ms', ARGV[2])
local n = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('ZADD', KEYS[2], 'NX', redis.call('HGET', KEYS[1], 'start_ms') or '0',
           redis.call('HGET', KEYS[1], 'id') or '')
return {1, tostring(n)}
"""

# ARGV owner, now, lease_ms, cursor, records written by this page
PROGRESS = """
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] or
   redis.call('HGET', KEYS[1], 'status') ~= 'filling' then return 0 end
local now = tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'cursor', ARGV[4], 'lease_until', tostring(now + tonumber(ARGV[3])),
           'updated_ms', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'written', tonumber(ARGV[5]))
redis.call('HINCRBY', KEYS[1], 'pages', 1)
return 1
"""

# ARGV owner, now, status, reason
FINISH = """
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] or
   redis.call('HGET', KEYS[1], 'status') ~= 'filling' then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[3], 'reason', ARGV[4], 'updated_ms', ARGV[2],
           'done_ms', ARGV[2])
redis.call('HDEL', KEYS[1], 'owner', 'lease_until')
redis.call('ZREM', KEYS[2], redis.call('HGET', KEYS[1], 'id') or '')
return 1
"""

# ARGV owner, now, reason, covered_by, split_into: closed as covered by other feeders' coverage
COVER = """
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] or
   redis.call('HGET', KEYS[1], 'status') ~= 'filling' then return 0 end
redis.call('HSET', KEYS[1], 'status', 'covered', 'reason', ARGV[3], 'covered_by', ARGV[4],
           'updated_ms', ARGV[2], 'done_ms', ARGV[2])
if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'split_into', ARGV[5]) end
redis.call('HDEL', KEYS[1], 'owner', 'lease_until')
redis.call('ZREM', KEYS[2], redis.call('HGET', KEYS[1], 'id') or '')
return 1
"""

# KEYS[1] gaps:uncovered:<shard>:<channel>:<instId>; ARGV start, end, member, trim_before, ttl_ms.
# The window of a gap (or a gap's part) that no feeder covered, registered once: returns the
# member of an earlier window that contains it ('' when this one was registered now).
REGISTER_UNCOVERED = """
local s, e = tonumber(ARGV[1]), tonumber(ARGV[2])
for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])) do
  local a, b = string.match(m, '^(%d+):(%d+):')
  if a and tonumber(a) <= s and tonumber(b) >= e then return m end
end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return ''
"""

# ARGV owner, now, reason, count (1: a failure, 0: an interrupt), retry_at: failed, cursor kept,
# still in gaps:open (the sweep's list of what to repair)
FAIL = """
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] or
   redis.call('HGET', KEYS[1], 'status') ~= 'filling' then return 0 end
redis.call('HSET', KEYS[1], 'status', 'failed', 'reason', ARGV[3], 'last_error', ARGV[3],
           'updated_ms', ARGV[2], 'retry_at', ARGV[5])
redis.call('HDEL', KEYS[1], 'owner', 'lease_until')
if ARGV[4] == '1' then redis.call('HINCRBY', KEYS[1], 'failures', 1) end
return 1
"""

# ARGV owner, now, error, count (1: a failure, 0: a planned pause such as a time limit):
# back to open, cursor kept
RELEASE = """
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] or
   redis.call('HGET', KEYS[1], 'status') ~= 'filling' then return 0 end
redis.call('HSET', KEYS[1], 'status', 'open', 'last_error', ARGV[3], 'updated_ms', ARGV[2])
redis.call('HDEL', KEYS[1], 'owner', 'lease_until')
if ARGV[4] == '1' then redis.call('HINCRBY', KEYS[1], 'failures', 1) end
return 1
"""


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


class GapLedger:
    """Gap transitions on a redis client (redis.Redis or fakeredis with Lua)."""

    def __init__(self, client: Any, lease_ms: int = 120_000) -> None:
        self.r = client
        self.lease_ms = lease_ms
        self._claim = client.register_script(CLAIM)
        self._progress = client.register_script(PROGRESS)
        self._finish = client.register_script(FINISH)
        self._release = client.register_script(RELEASE)
        self._fail = client.register_script(FAIL)
        self._cover = client.register_script(COVER)
        self._register = client.register_script(REGISTER_UNCOVERED)

    def get(self, gap_id: str) -> dict[str, str]:
        return {_s(k): _s(v) for k, v in self.r.hgetall(keys.gap_key(gap_id)).items()}

    def claim(self, gap_id: str, owner: str, now_ms: int) -> tuple[bool, str]:
        """(True, attempt number) or (False, why: missing | filled | unrepairable | busy).
        An open, a failed and an expired filling gap are claimable."""
        ok, info = self._claim(
            keys=[keys.gap_key(gap_id), keys.GAPS_OPEN], args=[owner, now_ms, self.lease_ms]
        )
        return bool(int(ok)), _s(info)

    def progress(self, gap_id: str, owner: str, now_ms: int, cursor: str, written: int) -> bool:
        """Save the cursor after a stored page and renew the lease; False if the lease was lost."""
        return bool(
            int(
                self._progress(
                    keys=[keys.gap_key(gap_id)],
                    args=[owner, now_ms, self.lease_ms, cursor, written],
                )
            )
        )

    def finish(self, gap_id: str, owner: str, now_ms: int, status: str, reason: str = "") -> bool:
        assert status in ("filled", "unrepairable")
        return bool(
            int(
                self._finish(
                    keys=[keys.gap_key(gap_id), keys.GAPS_OPEN],
                    args=[owner, now_ms, status, reason],
                )
            )
        )

    def cover(
        self,
        gap_id: str,
        owner: str,
        now_ms: int,
        covered_by: list[str],
        reason: str,
        split_into: tuple[str, ...] | list[str] = (),
    ) -> bool:
        """filling -> covered (final): other feeders published its window (or all of it but
        the parts recorded as `split_into`). False if the lease was lost."""
        return bool(
            int(
                self._cover(
                    keys=[keys.gap_key(gap_id), keys.GAPS_OPEN],
                    args=[owner, now_ms, reason[:500], ",".join(covered_by), ",".join(split_into)],
                )
            )
        )

    def register_uncovered(
        self, shard: str, channel: str, inst: str, start_ms: int, end_ms: int, ref: str, now_ms: int
    ) -> str:
        """Register the uncovered window [start_ms, end_ms] under `ref` (a gap id, or
        "<gap id>/<part>"); returns the ref of an earlier window containing it, or ""."""
        found = self._register(
            keys=[keys.uncovered_key(shard, channel, inst)],
            args=[
                start_ms,
                end_ms,
                f"{start_ms}:{end_ms}:{ref}",
                now_ms - keys.COVERAGE_KEEP_MS,
                keys.COVERAGE_KEEP_MS,
            ],
        )
        text = _s(found)
        return text.split(":", 2)[2] if text else ""

    def release(
        self, gap_id: str, owner: str, now_ms: int, error: str, failure: bool = True
    ) -> bool:
        return bool(
            int(
                self._release(
                    keys=[keys.gap_key(gap_id)],
                    args=[owner, now_ms, error[:500], "1" if failure else "0"],
                )
            )
        )

    def fail(
        self,
        gap_id: str,
        owner: str,
        now_ms: int,
        reason: str,
        *,
        retry_at_ms: int,
        failure: bool = True,
    ) -> bool:
        """filling -> failed with `reason`, retried by the sweep from `retry_at_ms`; `failure`
        False (an interrupt) leaves the failure count alone. False if the lease was lost."""
        return bool(
            int(
                self._fail(
                    keys=[keys.gap_key(gap_id)],
                    args=[owner, now_ms, reason[:500], "1" if failure else "0", retry_at_ms],
                )
            )
        )

    def mark_enqueued(self, gap_ids: list[str], now_ms: int) -> None:
        pipe = self.r.pipeline(transaction=False)
        for gid in gap_ids:
            pipe.hset(keys.gap_key(gid), "enqueued_ms", str(now_ms))
        pipe.execute()

    def create(self, gap: Gap, producer: str, now_ms: int) -> str:
        """Record a new open gap (manual, stale, audit, an uncovered part) found by `producer`;
        returns its id."""
        stored = record_gap(self.r, gap, producer, now_ms, atomic=True)
        log.info(
            "gap %s created: %s %s %s %s..%s (%s)",
            stored.id,
            gap.cause,
            gap.channel,
            gap.instId,
            gap.start_ms,
            gap.end_ms,
            gap.reason,
        )
        return stored.id

    def open_gaps(self, limit: int = 10_000) -> list[dict[str, str]]:
        ids = [_s(g) for g in self.r.zrange(keys.GAPS_OPEN, 0, limit - 1)]
        pipe = self.r.pipeline(transaction=False)
        for gid in ids:
            pipe.hgetall(keys.gap_key(gid))
        out = []
        for gid, h in zip(ids, pipe.execute()):
            if h:
                out.append({_s(k): _s(v) for k, v in h.items()})
            else:  # the hash is gone (flushed by hand): nothing to repair, drop the id
                self.r.zrem(keys.GAPS_OPEN, gid)
        return out

    def recent(self, limit: int = 50) -> list[dict[str, str]]:
        ids = [_s(g) for g in self.r.zrevrange(keys.GAPS_ALL, 0, limit - 1)]
        pipe = self.r.pipeline(transaction=False)
        for gid in ids:
            pipe.hgetall(keys.gap_key(gid))
        return [{_s(k): _s(v) for k, v in h.items()} for h in pipe.execute() if h]
