"""Before any REST call: did another feeder of the gap's shard cover its window?

A gap recorded by a feeder carries its shard (collector/ledger.py). The other feeders of that
shard record the intervals they published (core/coverage.py); `decide` (pure) compares them
with the gap's window (core/intervals.py):

    no shard (manual, sweep, an older feeder's gap)   -> repair (as always)
    the whole window covered                          -> covered (covered_by: who)
    not all, but another feeder's coverage is near the
      window and the gap is younger than the wait     -> wait (its coverage of the window's end
                                                         may not be written yet: it is written
                                                         once a second, after the publish)
    partly covered                                    -> split: the uncovered parts become new
                                                         gaps, this one is closed covered
    nothing covered                                   -> repair

Parts split off carry `split_from` and wait no more (their parent waited).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from core import coverage as coverage_store
from core import keys
from core.gaps import Gap
from core.intervals import contributors, uncovered


@dataclass(frozen=True)
class Verdict:
    action: str  # repair | covered | wait | split
    covered_by: list[str] = field(default_factory=list)
    pieces: list[tuple[int, int]] = field(default_factory=list)


def _int(v: Any) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def decide(
    gap: Mapping[str, str], cov: dict[str, list[tuple[int, int]]], now_ms: int, wait_ms: int
) -> Verdict:
    """What to do with `gap` given the shard's coverage near its window (feeder -> intervals)."""
    s, e = _int(gap.get("start_ms")), _int(gap.get("end_ms"))
    if not gap.get("shard") or s is None or e is None or e < s:
        return Verdict("repair")
    others = {f: ivs for f, ivs in cov.items() if f != gap.get("feeder")}
    every = [iv for ivs in others.values() for iv in ivs]
    pieces = uncovered((s, e), every)
    by = contributors((s, e), others)
    if not pieces:
        return Verdict("covered", by)
    young = now_ms - (_int(gap.get("created_ms")) or 0) < wait_ms
    if young and others and not gap.get("split_from"):
        return Verdict("wait", by, pieces)
    if pieces == [(s, e)]:
        return Verdict("repair")
    return Verdict("split", by, pieces)


def read_for(r: Any, gap: Mapping[str, str], wait_ms: int) -> dict[str, list[tuple[int, int]]]:
    """The shard's coverage that reaches the window, or ended at most `wait_ms` before it
    (a feeder whose latest write is just behind: worth the wait)."""
    s, e = _int(gap.get("start_ms")), _int(gap.get("end_ms"))
    if not gap.get("shard") or s is None or e is None:
        return {}
    return coverage_store.read(
        r, gap["shard"], gap.get("channel", ""), gap.get("instId", ""), s - wait_ms, e
    )


def pieces_as_gaps(gap: Mapping[str, str], pieces: list[tuple[int, int]]) -> list[Gap]:
    """The uncovered parts of `gap` as new gaps of the same stream, cause and shard; a part that
    keeps one of the gap's bounds keeps its tradeId/seqId too."""
    s, e = int(gap["start_ms"]), int(gap["end_ms"])
    out = []
    for p, q in pieces:
        out.append(
            Gap(
                gap["channel"],
                gap["instId"],
                p,
                q,
                gap["cause"],
                start_id=gap.get("start_id", "") if p == s else "",
                end_id=gap.get("end_id", "") if q == e else "",
                reason=f"the part of gap {gap['id']} no other feeder covered",
                extra=(("shard", gap["shard"]), ("split_from", gap["id"])),
            )
        )
    return out


def close_covered(ledger: Any, gaps: list[dict[str, str]], now_ms: int, owner: str) -> list[str]:
    """The sweep's pass: close every open or failed gap whose window the other feeders of its
    shard now cover (no waiting here: the repair task waits); returns their ids. One pipelined
    read for all of them."""
    todo = []
    for g in gaps:
        s, e = _int(g.get("start_ms")), _int(g.get("end_ms"))
        if g.get("shard") and g.get("status") in ("open", "failed") and s is not None:
            todo.append((g, s, e))
    if not todo:
        return []
    pipe = ledger.r.pipeline(transaction=False)
    for g, s, _e in todo:
        key = keys.coverage_key(g["shard"], g.get("channel", ""), g.get("instId", ""))
        pipe.zrangebyscore(key, s, "+inf", withscores=True)
    closed = []
    for (g, _s, e), rows in zip(todo, pipe.execute()):
        verdict = decide(g, coverage_store.parse_rows(rows, e or 0), now_ms, 0)
        if verdict.action != "covered":
            continue
        ok, _ = ledger.claim(g["id"], owner, now_ms)
        reason = f"covered by {', '.join(verdict.covered_by)} (sweep)"
        if ok and ledger.cover(g["id"], owner, now_ms, verdict.covered_by, reason):
            closed.append(g["id"])
    return closed
