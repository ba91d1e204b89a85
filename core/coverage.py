"""Coverage in Redis: cov:<shard>:<channel>:<instId> (core/keys.py), written by each feeder of
the shard (collector/coverage.py decides the intervals), read by backfill before any REST call
(tasks/backfill/coverage.py). A zset per stream: member "<feeder>|<start_ms>", score end_ms, so
extending an interval is one ZADD of the same member. Bounded by age: members whose end is older
than COVERAGE_KEEP_MS are trimmed, and the key expires that long after its last write.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from core import keys

SEP = "|"  # FEEDER_ID may not contain it (core/settings.py)


def member(feeder: str, start_ms: int) -> str:
    return f"{feeder}{SEP}{start_ms}"


def parse_member(raw: Any) -> tuple[str, int] | None:
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    feeder, sep, start = text.rpartition(SEP)
    if not sep or not feeder:
        return None
    try:
        return feeder, int(start)
    except ValueError:
        return None


def write(
    pipe: Any,
    shard: str,
    feeder: str,
    changes: Iterable[tuple[tuple[str, str], int, int]],
    *,
    now_ms: int,
    trim: bool,
) -> None:
    """Queue the changed intervals on `pipe` (the caller executes it, once per cycle)."""
    touched = set()
    for (channel, inst), start, end in changes:
        name = keys.coverage_key(shard, channel, inst)
        pipe.zadd(name, {member(feeder, start): end})
        touched.add(name)
    for name in touched:
        pipe.pexpire(name, keys.COVERAGE_KEEP_MS)
        if trim:
            pipe.zremrangebyscore(name, "-inf", f"({now_ms - keys.COVERAGE_KEEP_MS}")


def read(
    r: Any, shard: str, channel: str, inst: str, start_ms: int, end_ms: int
) -> dict[str, list[tuple[int, int]]]:
    """feeder -> its intervals that reach into [start_ms, end_ms] (open (a, b): core/intervals)."""
    rows = r.zrangebyscore(
        keys.coverage_key(shard, channel, inst), start_ms, "+inf", withscores=True
    )
    return parse_rows(rows, end_ms)


def parse_rows(rows: Iterable[tuple[Any, float]], end_ms: int) -> dict[str, list[tuple[int, int]]]:
    """ZRANGEBYSCORE ... WITHSCORES rows as feeder -> intervals starting by `end_ms`."""
    out: dict[str, list[tuple[int, int]]] = {}
    for raw, score in rows:
        parsed = parse_member(raw)
        if parsed is None or parsed[1] > end_ms:
            continue
        out.setdefault(parsed[0], []).append((parsed[1], int(score)))
    return out
