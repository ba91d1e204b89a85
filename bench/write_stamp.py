"""Redis's own clock in every state hash the workers write, for the latency measurement.

    from bench.write_stamp import install; install()     # in the worker process, before tasks run

Replaces the workers' versioned-write script (tasks/writers/redis_state.py, VERSIONED_HSET) with
the same script plus one step: when it writes, it also sets `_bench_written_us` to Redis's `TIME`
in microseconds. That is the moment the state write happened, taken by Redis itself inside the
write; the bench's keyspace subscriber reads it together with the record's `ts` (one HMGET, so
the pair always belongs to the same write) and subtracts okxsim's send time.

Why not MONITOR, which gives the same moment without touching the workers: redis-server formats
every command for its monitors, argument by argument, on its one thread, before it serves the
next client. Each task message (LPUSH) and its copy in kombu's `unacked` hash are several KB,
so at 2,000 msg/s MONITOR added about 1 ms to every state write it timed (bench.e2e, 2026-11-27:
send -> subscriber p50 1.6-1.9 ms without it, 3.0-3.4 ms with it). The script's extra `TIME` and
field cost Redis about a microsecond. `bench.e2e --stages` still uses MONITOR, for a per-stage
split whose absolute figures it says are inflated.

Bench only: production state hashes carry no such field.
"""

from __future__ import annotations

import hashlib

FIELD = "_bench_written_us"

_WRITE = "redis.call('HSET', KEYS[1], unpack(ARGV, 3 + 2 * n))\n"
# One HSET still (one keyspace notification per write, as without the stamp).
_STAMPED = (
    "local fields = {unpack(ARGV, 3 + 2 * n)}\n"
    "local now = redis.call('TIME')\n"
    f"fields[#fields + 1] = '{FIELD}'\n"
    "fields[#fields + 1] = now[1] .. string.format('%06d', now[2])\n"
    "redis.call('HSET', KEYS[1], unpack(fields))\n"
)


def stamped_script(src: str) -> str:
    if src.count(_WRITE) != 1:
        raise RuntimeError("bench.write_stamp: the versioned-write script changed; update _WRITE")
    return src.replace(_WRITE, _STAMPED)


def install() -> str:
    """Make this process's RedisState call the stamped script; returns its SHA."""
    from tasks.writers import redis_state

    src = stamped_script(redis_state.VERSIONED_HSET)
    sha = hashlib.sha1(src.encode()).hexdigest()
    scripts = {s: v for s, v in redis_state.SCRIPTS.items() if s != redis_state.VERSIONED_SHA}
    scripts[sha] = src
    redis_state.SCRIPTS = scripts  # what RedisState loads after a NOSCRIPT reply
    redis_state.VERSIONED_SHA = sha  # what RedisState._hset calls
    return sha
