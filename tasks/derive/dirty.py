"""The dirty set: which (instId, minute) the stored trades changed since the last rebuild.

Thin Redis I/O on the current-state Redis (key names in core/keys.py):

* `mark_trades(client, records)`: the trades writer's hook, one ZADD per batch (never one
  command per trade); member "<instId>|<minute ms>", score the time of marking in µs.
* `mark_range(client, inst_id, start, end)`: every minute of a window (a gap closed, the audit
  validated a window), in one ZADD.
* `claim(client, n)` and `done(client, claimed)`: the rebuild reads the oldest marks with their
  scores and, once their bars are rebuilt, removes each only if its score is unchanged. A batch
  that marked the minute again meanwhile (its trades may have missed this rebuild) keeps it
  dirty; a rebuild that dies before `done` leaves every mark in place for the next one.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from core import keys
from tasks.derive import bars

SEP = "|"  # instIds never hold it

# Remove each member whose score is still the one the rebuild read (ARGV: member, score, ...).
_DONE = """
local removed = 0
for i = 1, #ARGV, 2 do
  local s = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if s and tonumber(s) == tonumber(ARGV[i + 1]) then
    removed = removed + redis.call('ZREM', KEYS[1], ARGV[i])
  end
end
return removed
"""


def member(inst_id: str, minute: int) -> str:
    return f"{inst_id}{SEP}{minute}"


def parse_member(raw: Any) -> tuple[str, int]:
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    inst_id, _, minute = text.rpartition(SEP)
    return inst_id, int(minute)


def _now_us() -> float:
    return float(time.time_ns() // 1000)


def minutes_of(records: Iterable[Mapping[str, Any]]) -> set[tuple[str, int]]:
    return {(str(r["instId"]), bars.minute_of(int(r["ts"]))) for r in records}


def mark_trades(client: Any, records: Iterable[Mapping[str, Any]]) -> int:
    """Mark the minutes of `records` (checked trade records) dirty; returns how many."""
    found = minutes_of(records)
    if not found:
        return 0
    score = _now_us()
    client.zadd(keys.DERIVE_DIRTY, {member(i, m): score for i, m in found})
    return len(found)


def mark_stored(client: Any, parts: Iterable[tuple[str, list[dict]]]) -> int:
    """Mark the minutes of the trades among (kind, records) parts that just reached MongoDB (the
    inline history write, the drain of parked history): one ZADD. Only after they are stored: a
    rebuild that ran before they were would clear the mark and leave their bars without them."""
    return mark_trades(client, [r for kind, records in parts if kind == "trades" for r in records])


def mark_range(client: Any, inst_id: str, start_ms: int, end_ms: int) -> int:
    """Mark every minute touching [start_ms, end_ms] dirty."""
    first, last = bars.minute_of(start_ms), bars.minute_of(end_ms)
    if last < first:
        return 0
    score = _now_us()
    client.zadd(
        keys.DERIVE_DIRTY,
        {member(inst_id, m): score for m in range(first, last + 1, bars.MINUTE)},
    )
    return (last - first) // bars.MINUTE + 1


def claim(client: Any, limit: int) -> list[tuple[str, float]]:
    """The `limit` oldest marks: (member, score)."""
    rows = client.zrange(keys.DERIVE_DIRTY, 0, limit - 1, withscores=True)
    return [(m.decode() if isinstance(m, bytes) else m, float(s)) for m, s in rows]


def done(client: Any, claimed: list[tuple[str, float]]) -> int:
    """Remove the claimed marks that nobody marked again since; returns how many."""
    if not claimed:
        return 0
    args: list[Any] = []
    for m, s in claimed:
        args += [m, repr(s)]
    return int(client.eval(_DONE, 1, keys.DERIVE_DIRTY, *args))


def gap_closed(client: Any, gap: Mapping[str, Any], status: str) -> None:
    """Backfill finished a trades gap: rebuild every bar it touches (filled: its trades are in;
    unrepairable: its bars stay incomplete for good, recorded in derive:holes:<instId>)."""
    inst_id = str(gap.get("instId") or "")
    try:
        start, end = int(gap["start_ms"]), int(gap["end_ms"])
    except (KeyError, TypeError, ValueError):
        return
    if not inst_id or end < start:
        return
    if status == "unrepairable":
        client.zadd(keys.derive_holes(inst_id), {f"{start}:{end}": start})
    elif status == "filled":
        known = client.hget(keys.DERIVE_COVERED_FROM, inst_id)
        if known is None or int(known) > start:
            client.hset(keys.DERIVE_COVERED_FROM, inst_id, str(start))
    mark_range(client, inst_id, start, end)
